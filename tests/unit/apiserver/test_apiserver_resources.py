"""The stored form of objects and the resourceVersion splice used by the get/list fast path."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from controlplane.apiserver.resources import ResourceOps
from controlplane.storage.interface import KeyValue


@pytest.mark.parametrize(
    "obj",
    [
        {
            "spec": {"template": {"metadata": {"name": "inner"}}},
            "metadata": {"name": "a", "resourceVersion": "7"},
            "kind": "X",
            "apiVersion": "v1",
        },
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "n", "labels": {"metadata": "{"}},
            "data": {"k": '"metadata":{'},
        },
    ],
)
def test_raw_splice_equals_decode(obj: dict[str, Any]) -> None:
    value = ResourceOps.encode(obj)
    assert b"resourceVersion" not in value
    kv = KeyValue("/registry/x/a", value, 3, 42)
    spliced = orjson.loads(ResourceOps.raw(kv))
    assert spliced == ResourceOps.decode(kv)
    assert spliced["metadata"]["resourceVersion"] == "42"
    assert list(spliced)[:3] == ["apiVersion", "kind", "metadata"]


def test_raw_of_foreign_bytes_falls_back_to_decoding() -> None:
    kv = KeyValue("/registry/x/a", b'{"metadata":{"name":"a"},"apiVersion":"v1","kind":"X"}', 1, 5)
    assert orjson.loads(ResourceOps.raw(kv))["metadata"] == {"name": "a", "resourceVersion": "5"}


def test_generate_name_collision_draws_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from controlplane.api import registry
    from controlplane.apiserver import strategy
    from controlplane.apiserver.admission import Admission
    from controlplane.storage.memory import MemoryStore

    store = MemoryStore()
    ops = ResourceOps(store, Admission(store))
    ops.create(registry.NAMESPACES, None, {"metadata": {"name": "default"}})
    draws = iter([list("aaaaa"), list("aaaaa"), list("bbbbb")])
    monkeypatch.setattr(strategy.random, "choices", lambda population, k: next(draws))
    body = {"metadata": {"generateName": "cm-"}}
    assert ops.create(registry.CONFIGMAPS, "default", dict(body))["metadata"]["name"] == "cm-aaaaa"
    assert ops.create(registry.CONFIGMAPS, "default", dict(body))["metadata"]["name"] == "cm-bbbbb"


# -- creates through ``create_nowait`` (the event-loop path of the server) -------------------


class _AllowAll:
    def authorize(self, user: Any, attrs: Any) -> tuple[bool, str]:
        return True, ""


async def _asgi(server: Any, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    data = orjson.dumps(body)
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        "client": ("127.0.0.1", 5555),
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": data, "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await server(scope, receive, send)
    return int(sent[0]["status"]), orjson.loads(sent[1]["body"])


def test_event_loop_creates_retry_collisions_and_release_allocations_on_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from controlplane.apiserver import strategy
    from controlplane.apiserver.app import ApiServer
    from controlplane.apiserver.options import ServerOptions
    from controlplane.storage.interface import StoreError
    from controlplane.storage.memory import MemoryStore

    class FlakyStore(MemoryStore):
        """create_nowait answers from another thread, and fails Service writes when told to."""

        fail_services = False

        def create_nowait(self, key: str, value: bytes, done: Any) -> None:
            import threading

            def later() -> None:
                if self.fail_services and key.startswith("/registry/services/"):
                    done(None, StoreError("disk full"))
                else:
                    super(FlakyStore, self).create_nowait(key, value, done)

            threading.Thread(target=later).start()

    async def main() -> None:
        store = FlakyStore()
        server = ApiServer(store, ServerOptions(authorizer=_AllowAll(), anonymous_auth=True, event_ttl=0))
        await server.startup()
        try:
            assert server.nowait is store
            draws = iter([list("aaaaa"), list("aaaaa"), list("bbbbb")])
            monkeypatch.setattr(strategy.random, "choices", lambda population, k: next(draws))
            path = "/api/v1/namespaces/default/configmaps"
            code, first = await _asgi(server, "POST", path, {"metadata": {"generateName": "cm-"}})
            assert (code, first["metadata"]["name"]) == (201, "cm-aaaaa")
            code, second = await _asgi(server, "POST", path, {"metadata": {"generateName": "cm-"}})
            assert (code, second["metadata"]["name"]) == (201, "cm-bbbbb")  # drew again after a collision
            assert (
                int(second["metadata"]["resourceVersion"])
                == store.get("/registry/configmaps/default/cm-bbbbb").mod_revision
            )  # type: ignore[union-attr]
            code, status = await _asgi(server, "POST", path, {"metadata": {"name": "cm-aaaaa"}})
            assert (code, status["reason"]) == (409, "AlreadyExists")
            # A Service whose write fails: 500, and its ClusterIP is free again for the next one.
            svc = {"metadata": {"name": "s"}, "spec": {"clusterIP": "10.96.0.50", "ports": [{"port": 80}]}}
            store.fail_services = True
            code, _ = await _asgi(server, "POST", "/api/v1/namespaces/default/services", svc)
            assert code == 500
            store.fail_services = False
            code, created = await _asgi(server, "POST", "/api/v1/namespaces/default/services", svc)
            assert (code, created["spec"]["clusterIP"]) == (201, "10.96.0.50")
        finally:
            await server.shutdown()

    asyncio.run(main())


# -- pods/binding through ResourceOps.guaranteed_update ------------------------------------------


def test_binding_rereads_after_a_concurrent_status_update_and_binds_once() -> None:
    """A status write landing between the binding's read and write: the binding reads again and
    keeps it (no lost update); a second binding of the same pod is a 409."""
    from controlplane.api import errors, registry
    from controlplane.apiserver import subresources
    from controlplane.apiserver.admission import Admission
    from controlplane.storage.memory import MemoryStore

    class RacingStore(MemoryStore):
        """The first update of a pod loses the race to a status write made just before it."""

        raced = False

        def update(self, key: str, value: bytes, expected_revision: int) -> int:
            if not self.raced and key.startswith("/registry/pods/"):
                self.raced = True
                pod = ResourceOps.decode(self.get(key) or KeyValue(key, b"{}", 0, 0))
                pod.setdefault("status", {})["message"] = "written meanwhile"
                super().update(key, ResourceOps.encode(pod), expected_revision)
            return super().update(key, value, expected_revision)

    store = RacingStore()
    admission = Admission(store)
    admission.service_accounts = False  # no ServiceAccount in this store: not what is tested here
    ops = ResourceOps(store, admission)
    ops.create(registry.NAMESPACES, None, {"metadata": {"name": "default"}})
    ops.create(
        registry.PODS, "default", {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    )
    binding = {"metadata": {"name": "p"}, "target": {"kind": "Node", "name": "node-a"}}
    assert subresources.bind(ops, "default", "p", binding, False)["status"] == "Success"
    assert store.raced
    pod = ops.get(registry.PODS, "default", "p")
    assert pod["spec"]["nodeName"] == "node-a"
    assert pod["status"]["message"] == "written meanwhile"
    assert [c["type"] for c in pod["status"]["conditions"]] == ["PodScheduled"]
    with pytest.raises(errors.Conflict, match='already assigned to node "node-a"'):
        subresources.bind(ops, "default", "p", {**binding, "target": {"name": "node-b"}}, False)
    with pytest.raises(errors.NotFound):
        subresources.bind(ops, "default", "gone", binding, False)
