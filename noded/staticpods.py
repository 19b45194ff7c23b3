"""The static-pod source (kubelet's file ``config`` source and mirror-pod manager).

Role: pods run from manifests in ``--manifests-dir`` (kubelet's ``staticPodPath``): each valid
manifest becomes a pod with a stable uid derived from the node and the manifest's hash, and the API
gets a *mirror pod* (annotation ``kubernetes.io/config.mirror``) that carries its status. A changed
manifest is a new pod (new hash, new uid): the old one is torn down, the new one started; the
mirror is replaced. Invalid manifests are logged and skipped, never fatal.

Concurrency: ``sync`` runs on noded's housekeeping thread only; ``pods`` is replaced whole (never
mutated), so pod workers may read it from other threads.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from controlplane.api import errors, registry
from controlplane.client.rest import ApiClient
from noded import names

if TYPE_CHECKING:
    from noded.server import PodLister

log = logging.getLogger(__name__)

MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
SOURCE_ANNOTATION = "kubernetes.io/config.source"
HASH_ANNOTATION = "kubernetes.io/config.hash"


def is_mirror(pod: dict[str, Any]) -> bool:
    return MIRROR_ANNOTATION in (pod.get("metadata", {}).get("annotations") or {})


class StaticPodSource:
    def __init__(
        self,
        manifests_dir: Path | None,
        node_name: str,
        client: ApiClient,
        api_pods: PodLister,
        on_change: Callable[[str, dict[str, Any] | None], None],
    ) -> None:
        self.manifests_dir = manifests_dir
        self.node_name = node_name
        self.client = client
        self.api_pods = api_pods  # this node's pods in the API (mirrors among them)
        # on_change(key, old): a static pod appeared, changed or went away (old: the one to tear down)
        self.on_change = on_change
        self.pods: dict[str, dict[str, Any]] = {}  # key -> static pod (from its manifest)

    def read(self) -> dict[str, dict[str, Any]]:
        """Valid manifests from ``--manifests-dir`` as mirror pods; invalid files are logged, skipped."""
        out: dict[str, dict[str, Any]] = {}
        d = self.manifests_dir
        if d is None or not d.is_dir():
            return out
        for f in sorted(d.iterdir()):
            if f.suffix not in (".yaml", ".yml", ".json") or f.name.startswith("."):
                continue
            try:
                text = f.read_text()
                obj = yaml.safe_load(text)
                if not isinstance(obj, dict) or obj.get("kind") != "Pod":
                    raise ValueError("not a Pod manifest (kind must be Pod)")
                md = obj.get("metadata") or {}
                if not md.get("name"):
                    raise ValueError("metadata.name is required")
                cs = (obj.get("spec") or {}).get("containers")
                if not cs or not all(isinstance(c, dict) and c.get("name") and c.get("image") for c in cs):
                    raise ValueError("spec.containers must list containers with a name and an image")
            except (OSError, yaml.YAMLError, ValueError) as exc:
                log.error("static pod manifest %s is invalid, skipped: %s", f, exc)
                continue
            h = hashlib.sha256(text.encode()).hexdigest()[:16]
            name = f"{md['name']}-{self.node_name}"
            pod = copy.deepcopy(obj)
            pod["apiVersion"] = "v1"
            pmd = pod.setdefault("metadata", {})
            pmd["name"] = name
            pmd.setdefault("namespace", "default")
            pmd.setdefault("annotations", {}).update(
                {MIRROR_ANNOTATION: h, SOURCE_ANNOTATION: "file", HASH_ANNOTATION: h}
            )
            # The static pod's own uid (stable for this manifest on this node): the runtime knows
            # it by this uid; the mirror in the API gets its own.
            u = hashlib.sha256(f"{self.node_name}/{pmd['namespace']}/{name}/{h}".encode()).hexdigest()
            pmd["uid"] = f"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:32]}"
            pmd.pop("resourceVersion", None)
            pod["spec"]["nodeName"] = self.node_name
            pod.pop("status", None)
            out[f"{pmd['namespace']}/{name}"] = pod
        return out

    def sync(self) -> None:
        """Read the manifests, tell the agent what changed, and make the API's mirror pods match."""
        if self.manifests_dir is None:
            return
        want = self.read()
        for key in set(self.pods) | set(want):
            old, new = self.pods.get(key), want.get(key)
            if (old or {}).get("metadata", {}).get("uid") != (new or {}).get("metadata", {}).get("uid"):
                self.on_change(key, old)  # new, replaced or gone (old is then torn down)
        self.pods = want
        for key, pod in want.items():
            h = pod["metadata"]["annotations"][MIRROR_ANNOTATION]
            ns, name = key.split("/", 1)
            live = self.api_pods.get(key)
            if (
                live is not None
                and is_mirror(live)
                and live["metadata"]["annotations"][MIRROR_ANNOTATION] == h
                and not live["metadata"].get("deletionTimestamp")
            ):
                continue
            if live is not None:
                # Outdated, being deleted, or not a mirror: replace it (the static pod keeps running).
                with contextlib.suppress(errors.NotFound):
                    self.client.delete(registry.PODS, name, namespace=ns, grace_period_seconds=0)
                continue
            mirror = copy.deepcopy(pod)
            mirror["metadata"].pop("uid", None)
            with contextlib.suppress(errors.AlreadyExists):
                self.client.create(registry.PODS, mirror, namespace=ns)
                log.info("created mirror pod %s", key)
        for p in self.api_pods.list():
            if is_mirror(p) and names.pod_key(p) not in want:
                with contextlib.suppress(errors.NotFound):
                    self.client.delete(
                        registry.PODS,
                        p["metadata"]["name"],
                        namespace=p["metadata"]["namespace"],
                        grace_period_seconds=0,
                    )
