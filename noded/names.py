"""noded's naming scheme: every object it makes on the host has a name a person can map to its pod.

- pod network namespace: ``<prefix><ns>_<pod>_<uid8>`` under /var/run/netns
  (e.g. ``default_web-5d9f_1a2b3c4d``);
- sandbox (pause) id: ``<ns>_<pod>_<uid8>_<attempt>`` in runc's ``--root``;
- container id: ``<sandbox id>_<container>_<restartCount>``;
- cgroup: ``/kubelab/<hash8 of noded's root dir>/<container id>``;
- log file: ``/var/log/pods/<ns>_<pod>_<uid>/<container>/<restartCount>.log`` (Kubernetes' layout);
- annotations: ``io.kubernetes.pod.{name,namespace,uid}``, ``io.kubernetes.container.name``, ...

Namespace and pod names are DNS labels/subdomains (lowercase alphanumerics, ``-`` and ``.``) so
``_`` can separate the parts unambiguously. Netns names are kept ≤ 64 characters (the file name
limit is 255, but ``ip netns list`` should stay readable): long pod names are cut and the uid
suffix keeps them unique. Everything noded owns is also recorded under its root dir, so
``cleanup`` removes exactly these objects.
"""

from __future__ import annotations

import hashlib
from typing import Any

POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"
CONTAINER_HASH = "io.kubernetes.container.hash"
CONTAINER_RESTART = "io.kubernetes.container.restartCount"
CONTAINER_TYPE = "io.kubernetes.cri.container-type"  # "sandbox" | "container"
SANDBOX_ID = "io.kubernetes.cri.sandbox-id"
SANDBOX_ATTEMPT = "io.kubernetes.sandbox.attempt"
INIT_CONTAINER = "io.kubelab.init-container"

NETNS_MAX = 64


def pod_key(pod: dict[str, Any]) -> str:
    md = pod["metadata"]
    return f"{md.get('namespace', 'default')}/{md['name']}"


def uid8(uid: str) -> str:
    return uid.replace("-", "")[:8]


def _pod_base(namespace: str, name: str, uid: str, budget: int) -> str:
    suffix = f"_{uid8(uid)}"
    room = max(budget - len(suffix) - 1, 8)
    ns_part = namespace[: max(room // 3, 4)]
    pod_part = name[: room - len(ns_part)]
    return f"{ns_part}_{pod_part}{suffix}"


def netns_name(namespace: str, name: str, uid: str, prefix: str = "") -> str:
    return prefix + _pod_base(namespace, name, uid, NETNS_MAX - len(prefix))


def sandbox_id(namespace: str, name: str, uid: str, attempt: int) -> str:
    return f"{_pod_base(namespace, name, uid, 60)}_{attempt}"


def container_id(sandbox: str, container: str, restart_count: int) -> str:
    return f"{sandbox}_{container}_{restart_count}"


def pod_log_dir(log_root: str, namespace: str, name: str, uid: str) -> str:
    return f"{log_root}/{namespace}_{name}_{uid}"


def container_log_path(log_root: str, namespace: str, name: str, uid: str, container: str, restart_count: int) -> str:
    return f"{pod_log_dir(log_root, namespace, name, uid)}/{container}/{restart_count}.log"


def short_hash(text: str, n: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:n]


def container_hash(container: dict[str, Any]) -> str:
    """A hash of the container spec; a change means the container must be replaced (kubelet's
    ``HashContainer``). Only fields that matter for the running process are included."""
    import json

    keep = {
        k: container.get(k)
        for k in (
            "name",
            "image",
            "command",
            "args",
            "env",
            "workingDir",
            "ports",
            "volumeMounts",
            "securityContext",
            "resources",
        )
    }
    return short_hash(json.dumps(keep, sort_keys=True, default=str), 16)
