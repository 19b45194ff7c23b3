"""Informer behaviour against a scripted fake API (httpx.MockTransport): list, watch, re-watch,
bookmarks, relist on 410, handlers, indexes, resync."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from controlplane.api.registry import PODS
from controlplane.client.informer import Informer, namespace_index
from controlplane.client.rest import ApiClient
from tests.helpers.wait import wait_for


def pod(name: str, rv: str, ns: str = "default", node: str = "") -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": ns, "resourceVersion": rv}, "spec": {"nodeName": node}}


def rv(o: dict[str, Any]) -> str:
    return str(o["metadata"]["resourceVersion"])


class ScriptedApi:
    """Answers lists and watches from scripted queues; an exhausted watch script blocks until closed."""

    def __init__(self) -> None:
        self.lists: list[dict[str, Any]] = []
        self.watches: list[list[dict[str, Any]]] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    def handler(self, req: httpx.Request) -> httpx.Response:
        params = dict(req.url.params)
        with self.lock:
            self.requests.append(("watch" if params.get("watch") else "list", params))
            if not params.get("watch"):
                return httpx.Response(200, json=self.lists.pop(0))
            script = self.watches.pop(0) if self.watches else None
        if script is None:
            self.release.wait(10)
            return httpx.Response(200, content=b"")
        return httpx.Response(200, content=b"".join(orjson.dumps(e) + b"\n" for e in script))

    def list_params(self) -> list[dict[str, str]]:
        return [p for kind, p in self.requests if kind == "list"]

    def watch_rvs(self) -> list[str]:
        return [p.get("resourceVersion", "") for kind, p in self.requests if kind == "watch"]


@pytest.fixture
def api() -> Iterator[ScriptedApi]:
    a = ScriptedApi()
    yield a
    a.release.set()


def start(api: ScriptedApi, **kw: Any) -> tuple[Informer, list[tuple[str, str, str]]]:
    client = ApiClient("http://api.test", transport=httpx.MockTransport(api.handler))
    inf = Informer(client, PODS, **kw)
    log: list[tuple[str, str, str]] = []
    inf.add_handler(
        on_add=lambda o: log.append(("add", o["metadata"]["name"], o["metadata"]["resourceVersion"])),
        on_update=lambda old, new: log.append(
            (
                "update",
                new["metadata"]["name"],
                f"{old['metadata']['resourceVersion']}->{new['metadata']['resourceVersion']}",
            )
        ),
        on_delete=lambda o: log.append(("delete", o["metadata"]["name"], o["metadata"]["resourceVersion"])),
    )
    return inf, log


def test_list_then_watch_rewatch_from_last_rv_and_bookmarks(api: ScriptedApi) -> None:
    api.lists.append({"metadata": {"resourceVersion": "10"}, "items": [pod("a", "3"), pod("b", "9")]})
    api.watches.append(
        [
            {"type": "ADDED", "object": pod("c", "11")},
            {"type": "MODIFIED", "object": pod("a", "12", node="n1")},
            {"type": "DELETED", "object": pod("b", "13")},
            {"type": "BOOKMARK", "object": {"kind": "Pod", "metadata": {"resourceVersion": "20"}}},
        ]
    )
    inf, log = start(api)
    inf.start()
    try:
        assert inf.wait_for_sync(5)
        wait_for(lambda: len(api.watch_rvs()) >= 2, message="re-watch")
        assert api.watch_rvs()[:2] == ["10", "20"]  # re-watch resumes from the bookmark
        assert log == [
            ("add", "a", "3"),
            ("add", "b", "9"),
            ("add", "c", "11"),
            ("update", "a", "3->12"),
            ("delete", "b", "13"),
        ]
        assert sorted(inf.keys()) == ["default/a", "default/c"]
        got = inf.get("default/a")
        assert got is not None and got["spec"]["nodeName"] == "n1"
        assert got["kind"] == "Pod" and got["apiVersion"] == "v1"
        assert len(api.list_params()) == 1
    finally:
        api.release.set()
        inf.stop()


def test_relist_after_410_diffs_the_cache(api: ScriptedApi) -> None:
    api.lists.append({"metadata": {"resourceVersion": "10"}, "items": [pod("a", "3"), pod("b", "9")]})
    api.watches.append([{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}])
    api.lists.append({"metadata": {"resourceVersion": "50"}, "items": [pod("a", "3"), pod("c", "40"), pod("b", "45")]})
    api.watches.append([{"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}}])
    api.lists.append({"metadata": {"resourceVersion": "60"}, "items": [pod("c", "40")]})
    inf, log = start(api)
    inf.start()
    try:
        wait_for(lambda: api.watch_rvs() == ["10", "50", "60"], message="two relists and a watch")
        assert log == [
            ("add", "a", "3"),
            ("add", "b", "9"),
            ("add", "c", "40"),  # unchanged a fires nothing
            ("update", "b", "9->45"),
            ("delete", "a", "3"),
            ("delete", "b", "45"),
        ]
        assert inf.keys() == ["default/c"]
    finally:
        api.release.set()
        inf.stop()


def test_indexes_follow_changes(api: ScriptedApi) -> None:
    api.lists.append(
        {"metadata": {"resourceVersion": "1"}, "items": [pod("a", "1", node="n1"), pod("b", "1", ns="x", node="n1")]}
    )
    api.watches.append(
        [
            {"type": "MODIFIED", "object": pod("a", "2", node="n2")},
            {"type": "DELETED", "object": pod("b", "3", ns="x", node="n1")},
        ]
    )
    client = ApiClient("http://api.test", transport=httpx.MockTransport(api.handler))
    inf = Informer(client, PODS)
    inf.add_index("node", lambda o: [o["spec"]["nodeName"]] if o["spec"]["nodeName"] else [])
    inf.add_index("namespace", namespace_index)
    inf.start()
    try:
        wait_for(lambda: len(api.watch_rvs()) >= 2, message="watch consumed")
        assert inf.by_index("node", "n1") == []
        assert [o["metadata"]["name"] for o in inf.by_index("node", "n2")] == ["a"]
        assert inf.by_index("namespace", "x") == []
        with pytest.raises(KeyError):
            inf.by_index("nope", "v")
    finally:
        api.release.set()
        inf.stop()


def test_resync_redelivers_updates_and_late_handlers_get_adds(api: ScriptedApi) -> None:
    api.lists.append({"metadata": {"resourceVersion": "1"}, "items": [pod("a", "1")]})
    inf, log = start(api, resync_period=0.05)
    inf.start()
    try:
        wait_for(lambda: ("update", "a", "1->1") in log, message="resync update")
        late: list[str] = []
        inf.add_handler(on_add=lambda o: late.append(o["metadata"]["name"]))
        assert late == ["a"]
    finally:
        api.release.set()
        inf.stop()


def test_transport_errors_are_retried(api: ScriptedApi) -> None:
    fails = {"n": 2}

    def flaky(req: httpx.Request) -> httpx.Response:
        if fails["n"] > 0:
            fails["n"] -= 1
            raise httpx.ConnectError("refused")
        return api.handler(req)

    api.lists.append({"metadata": {"resourceVersion": "1"}, "items": [pod("a", "1")]})
    inf = Informer(ApiClient("http://api.test", transport=httpx.MockTransport(flaky)), PODS)
    inf.start()
    try:
        assert inf.wait_for_sync(5)
        assert inf.keys() == ["default/a"]
    finally:
        api.release.set()
        inf.stop()


def test_initial_list_follows_continue_tokens_and_watches_from_the_first_page_rv(api: ScriptedApi) -> None:
    api.lists.append({"metadata": {"resourceVersion": "30", "continue": "tok1"}, "items": [pod("a", "1")]})
    api.lists.append({"metadata": {"resourceVersion": "30", "continue": "tok2"}, "items": [pod("b", "2")]})
    api.lists.append({"metadata": {"resourceVersion": "30"}, "items": [pod("c", "3")]})
    inf, _log = start(api, page_size=1)
    inf.start()
    try:
        assert inf.wait_for_sync(5)
        wait_for(lambda: api.watch_rvs() == ["30"], message="watch from the list revision")
        assert [(p.get("limit"), p.get("continue")) for p in api.list_params()] == [
            ("1", None),
            ("1", "tok1"),
            ("1", "tok2"),
        ]
        assert sorted(inf.keys()) == ["default/a", "default/b", "default/c"]
        assert inf.lists == 1
    finally:
        api.release.set()
        inf.stop()


def test_a_typed_view_decodes_each_change_once_and_skips_what_does_not_decode(
    api: ScriptedApi, caplog: pytest.LogCaptureFixture
) -> None:
    from controlplane.api.models import Pod

    decoded: list[str] = []

    def decode(o: dict[str, Any]) -> Pod:
        decoded.append(o["metadata"]["resourceVersion"])
        return Pod.decode(o)

    bad = pod("bad", "12")
    bad["spec"]["nodeName"] = ["not", "a", "string"]
    api.lists.append({"metadata": {"resourceVersion": "10"}, "items": [pod("a", "3")]})
    api.watches.append(
        [
            {"type": "MODIFIED", "object": pod("a", "11", node="n1")},
            {"type": "ADDED", "object": bad},
            {"type": "ADDED", "object": pod("c", "13")},
            {"type": "DELETED", "object": pod("c", "14")},
        ]
    )
    inf, _ = start(api)
    view = inf.view(decode)
    inf.start()
    try:
        wait_for(lambda: inf.last_resource_version == "14", message="the watch events applied")
        a = view.get("default/a")
        assert a is not None and a.spec.node_name == "n1" and a.metadata.resource_version == "11"
        assert [p.metadata.name for p in view.list()] == ["a"]  # bad left out, c deleted
        assert inf.get("default/bad") is not None  # the raw cache still has it
        assert decoded == ["3", "11", "12", "13"]  # once per change, never on reads
        view.get("default/a"), view.list()
        assert decoded == ["3", "11", "12", "13"]
        assert any("default/bad 12 does not decode" in r.getMessage() for r in caplog.records)
    finally:
        inf.stop()
