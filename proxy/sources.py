"""Where the proxier's Services, EndpointSlices and Node come from.

- ``InformerSource``: the real thing — three ``controlplane.client`` informers (Services and
  EndpointSlices in all namespaces, our own Node by field selector) whose handlers feed the
  proxier, which marks each source synced after its first list.
- ``FileSource``: a YAML/JSON file of objects (``kubelab proxy --objects-file``), re-read when it
  changes, diffed by key and fed through the very same handlers. For learners without a cluster,
  and for privileged tests that drive the real runner and backends without an API server.

Concurrency: each source runs its own thread(s); the proxier's handlers are thread-safe.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from proxy.proxier import Proxier

log = logging.getLogger(__name__)

Obj = dict[str, Any]


def load_objects(text: str) -> list[Obj]:
    """Objects from YAML (multi-document) or JSON; ``List`` kinds are flattened."""
    out: list[Obj] = []
    for doc in yaml.safe_load_all(text):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ValueError(f"expected an object, got {type(doc).__name__}")
        if doc.get("kind", "").endswith("List") and isinstance(doc.get("items"), list):
            out.extend(i for i in doc["items"] if isinstance(i, dict))
        else:
            out.append(doc)
    return out


def split_kinds(objs: Iterable[Obj]) -> tuple[list[Obj], list[Obj], list[Obj]]:
    services, slices, nodes = [], [], []
    for o in objs:
        kind = o.get("kind")
        if kind == "Service":
            services.append(o)
        elif kind == "EndpointSlice":
            slices.append(o)
        elif kind == "Node":
            nodes.append(o)
    return services, slices, nodes


def _key(o: Obj) -> str:
    m = o.get("metadata") or {}
    return f"{m.get('namespace') or 'default'}/{m.get('name', '')}"


class FileSource:
    def __init__(self, proxier: Proxier, path: Path, node_name: str, poll: float = 0.05) -> None:
        self.proxier = proxier
        self.path = path
        self.node_name = node_name
        self.poll = poll
        self._seen: dict[str, dict[str, Obj]] = {"Service": {}, "EndpointSlice": {}}
        self._stamp: tuple[int, int] | None = None
        self._thread: threading.Thread | None = None

    def load(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            objs = load_objects(self.path.read_text())
        except (ValueError, yaml.YAMLError) as exc:
            log.error("cannot read %s: %s (keeping what was loaded before)", self.path, exc)
            return
        services, slices, nodes = split_kinds(objs)
        for kind, items, handler in (
            ("Service", services, self.proxier.on_service),
            ("EndpointSlice", slices, self.proxier.on_endpoint_slice),
        ):
            now = {_key(o): o for o in items}
            before = self._seen[kind]
            for key, obj in before.items():
                if key not in now:
                    handler(obj, deleted=True)
            for key, obj in now.items():
                if before.get(key) != obj:
                    handler(obj)
            self._seen[kind] = now
        mine = [n for n in nodes if (n.get("metadata") or {}).get("name") == self.node_name]
        self.proxier.on_node(mine[0] if mine else None)

    def start(self, stop: threading.Event) -> None:
        self.proxier.expect_sources("file")
        self.load()
        self.proxier.set_synced("file")

        def loop() -> None:
            while not stop.wait(self.poll):
                self.load()

        self._thread = threading.Thread(target=loop, name="proxy-file-source", daemon=True)
        self._thread.start()


class InformerSource:
    def __init__(self, proxier: Proxier, kubeconfig: str, node_name: str) -> None:
        from controlplane.api import registry
        from controlplane.client.informer import Informer
        from controlplane.client.rest import ApiClient

        self.proxier = proxier
        self.client = ApiClient.from_kubeconfig(kubeconfig)
        self.informers = {
            "services": Informer(self.client, registry.SERVICES),
            "endpointslices": Informer(self.client, registry.ENDPOINTSLICES),
            "node": Informer(self.client, registry.NODES, field_selector=f"metadata.name={node_name}"),
        }
        p = proxier
        self.informers["services"].add_handler(
            on_add=p.on_service,
            on_update=lambda old, new: p.on_service(new),
            on_delete=lambda o: p.on_service(o, deleted=True),
        )
        self.informers["endpointslices"].add_handler(
            on_add=p.on_endpoint_slice,
            on_update=lambda old, new: p.on_endpoint_slice(new),
            on_delete=lambda o: p.on_endpoint_slice(o, deleted=True),
        )
        self.informers["node"].add_handler(
            on_add=p.on_node, on_update=lambda old, new: p.on_node(new), on_delete=lambda o: p.on_node(None)
        )

    def start(self, stop: threading.Event) -> None:
        self.proxier.expect_sources(*self.informers)
        for inf in self.informers.values():
            inf.start()

        def mark_synced() -> None:
            pending = dict(self.informers)
            while pending and not stop.is_set():
                for name, inf in list(pending.items()):
                    if inf.wait_for_sync(0.1):
                        self.proxier.set_synced(name)
                        del pending[name]

        threading.Thread(target=mark_synced, name="proxy-informer-sync", daemon=True).start()

    def stop(self) -> None:
        for inf in self.informers.values():
            inf.stop()
        self.client.close()
