"""Issue 11: the API server under hostile input — one regression test per case, against the real server.

Each test asserts the exact status code and reason Kubernetes answers with, that nothing was
stored or changed (the objects and their resourceVersions listed before and after), and that the
server still answers. The limits themselves live in ``controlplane/api/limits.py``.

The durability half of crash containment (a SIGKILL loses no acknowledged write) is
``test_durability.py``; the in-process catch-all (an unexpected exception → 500 Status, no
traceback) is ``test_unexpected_exception_is_a_500_status`` here.
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.helpers.apiserver import RunningApiServer, start_apiserver
from tests.helpers.kubectl import kubectl_binary

NS_A, NS_B = "hostile-a", "hostile-b"
METHOD_NOT_ALLOWED = "the server does not allow this method on the requested resource"
# Kinds whose objects the tests look at before and after each hostile request.
WATCHED = ("/api/v1/namespaces", "/api/v1/configmaps", "/api/v1/services", "/apis/apps/v1/deployments")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApiServer]:
    """A server of its own: a short header read timeout (2 s instead of 32 s) keeps that test short."""
    srv = start_apiserver(
        tmp_path_factory.mktemp("hostile"), store="memory", extra_args=["--read-header-timeout", "2s"]
    )
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def http(server: RunningApiServer) -> Iterator[httpx.Client]:
    with server.http(timeout=30.0) as c:
        for ns in (NS_A, NS_B):
            assert c.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).status_code == 201
            cm = {"metadata": {"name": "keep"}, "data": {"x": "1"}}
            assert c.post(f"/api/v1/namespaces/{ns}/configmaps", json=cm).status_code == 201
        try:
            yield c
        finally:
            for ns in (NS_A, NS_B):
                c.delete(f"/api/v1/namespaces/{ns}")


def snapshot(http: httpx.Client) -> set[tuple[str, str, str, str]]:
    """(path, namespace, name, resourceVersion) of every object of the watched kinds."""
    out = set()
    for path in WATCHED:
        r = http.get(path)
        assert r.status_code == 200, r.text
        for item in r.json()["items"]:
            md = item["metadata"]
            out.add((path, md.get("namespace", ""), md["name"], md["resourceVersion"]))
    return out


def assert_alive(server: RunningApiServer, http: httpx.Client) -> None:
    assert server.proc is not None and server.proc.poll() is None, "the server process died"
    assert http.get("/readyz").status_code == 200
    assert http.get("/api/v1/namespaces/default").status_code == 200


def assert_status(r: httpx.Response, code: int, reason: str) -> dict[str, Any]:
    assert r.status_code == code, r.text[:2000]
    body: dict[str, Any] = r.json()
    assert body["kind"] == "Status" and body["status"] == "Failure", body
    assert body["reason"] == reason and body["code"] == code, body
    return body


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def billion_laughs(levels: int = 9, fanout: int = 9, indent: str = "  ") -> str:
    """The classic alias bomb: ``levels`` anchors, each ``fanout`` aliases of the one before."""
    lines = [f'{indent}l0: &l0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"{indent}l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fanout) + "]")
    return "\n".join(lines) + "\n"


# --- case 1: the process dies (YAML alias bomb) -----------------------------------------------


@pytest.mark.parametrize("where", ["data", "annotations", "unknown-field"])
def test_yaml_alias_bomb_is_refused_before_expansion(server: RunningApiServer, http: httpx.Client, where: str) -> None:
    if where == "data":
        doc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\ndata:\n" + billion_laughs()
    elif where == "annotations":
        doc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\n  annotations:\n" + billion_laughs(
            indent="    "
        )
    else:
        doc = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bomb\nlaughs:\n" + billion_laughs()
    assert len(doc) < 1024  # a ~500-byte request
    assert server.pid is not None
    before, rss_before = snapshot(http), rss_kib(server.pid)
    r = http.post(f"/api/v1/namespaces/{NS_A}/configmaps", content=doc, headers={"Content-Type": "application/yaml"})
    body = assert_status(r, 400, "BadRequest")
    assert "document contains excessive aliasing" in body["message"]
    assert len(r.content) < 4096
    assert_alive(server, http)
    grown = rss_kib(server.pid) - rss_before
    assert grown < 8 * 1024, f"the server's RSS grew by {grown} KiB answering a 500-byte request"
    assert snapshot(http) == before
    assert http.get(f"/api/v1/namespaces/{NS_A}/configmaps/bomb").status_code == 404


def test_values_echoed_in_errors_are_truncated(server: RunningApiServer, http: httpx.Client) -> None:
    """A 2 MB value where a string belongs: the error quotes a few hundred characters of it, not 2 MB."""
    before = snapshot(http)
    cm = {"metadata": {"name": "big", "labels": {"a": "b"}}, "data": {"k": ["x" * 1000] * 2000}}
    r = http.post(f"/api/v1/namespaces/{NS_A}/configmaps", json=cm)
    assert 400 <= r.status_code < 500 and r.json()["kind"] == "Status", r.text[:500]
    assert len(r.content) < 8192, f"a {len(r.content)}-byte error answer"
    assert snapshot(http) == before
    assert_alive(server, http)


# --- case 2: data destroyed (collection DELETE without a namespace) ------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/api/v1/configmaps"),
        ("DELETE", "/api/v1/services"),
        ("DELETE", "/apis/apps/v1/deployments"),
        ("DELETE", "/api/v1/namespaces"),
        ("POST", "/api/v1/configmaps"),
        ("PUT", f"/api/v1/namespaces/{NS_A}/configmaps"),
        ("POST", f"/api/v1/namespaces/{NS_A}/configmaps/keep"),
        ("DELETE", f"/api/v1/namespaces/{NS_A}/status"),
    ],
)
def test_verbs_kubernetes_does_not_serve_are_405(
    server: RunningApiServer, http: httpx.Client, method: str, path: str
) -> None:
    before = snapshot(http)
    kw: dict[str, Any] = {"json": {"metadata": {"name": "x"}}} if method in ("POST", "PUT") else {}
    body = assert_status(http.request(method, path, **kw), 405, "MethodNotAllowed")
    assert body["message"] == METHOD_NOT_ALLOWED
    after = snapshot(http)
    assert after == before
    assert {(NS_A, "keep"), (NS_B, "keep")} <= {(ns, n) for p, ns, n, _ in after if p == "/api/v1/configmaps"}
    assert_alive(server, http)


def test_deletecollection_in_one_namespace_still_works(server: RunningApiServer, http: httpx.Client) -> None:
    """The namespaced collection path keeps deletecollection (and deletes in that namespace only)."""
    cm = {"metadata": {"name": "doomed", "labels": {"hostile": "doomed"}}}
    for ns in (NS_A, NS_B):
        assert http.post(f"/api/v1/namespaces/{ns}/configmaps", json=cm).status_code == 201
    try:
        r = http.delete(f"/api/v1/namespaces/{NS_A}/configmaps", params={"labelSelector": "hostile=doomed"})
        assert r.status_code == 200, r.text
        assert [i["metadata"]["name"] for i in r.json()["items"]] == ["doomed"]
        assert http.get(f"/api/v1/namespaces/{NS_B}/configmaps/doomed").status_code == 200
        assert http.get(f"/api/v1/namespaces/{NS_A}/configmaps/keep").status_code == 200
    finally:
        http.delete(f"/api/v1/namespaces/{NS_B}/configmaps/doomed")
        http.delete(f"/api/v1/namespaces/{NS_A}/configmaps/doomed")


def test_accepted_verbs_are_exactly_discoverys(http: httpx.Client) -> None:
    """Every (path, method) the router accepts maps to a verb discovery publishes for it, and back."""
    from controlplane.api import registry
    from controlplane.apiserver.requestinfo import parse_resource_path, request_verb

    methods = ("GET", "POST", "PUT", "PATCH", "DELETE")
    docs = [http.get("/api/v1").json()] + [http.get(f"/apis/{g}/{v}").json() for g, v in registry.groups() if g]
    for doc in docs:
        prefix = "api/v1" if doc["groupVersion"] == "v1" else f"apis/{doc['groupVersion']}"
        for entry in doc["resources"]:
            plural, _, sub = entry["name"].partition("/")
            published = set(entry["verbs"])
            ns = "namespaces/n/" if entry["namespaced"] else ""
            if sub:
                route = parse_resource_path(f"{prefix}/{ns}{plural}/x/{sub}".split("/"))
                assert route is not None
                served = {request_verb(route, m, False) for m in methods} - {None}
                assert served <= published | {"create"}, (entry["name"], served, published)
                continue
            coll = parse_resource_path(f"{prefix}/{ns}{plural}".split("/"))
            item = parse_resource_path(f"{prefix}/{ns}{plural}/x".split("/"))
            assert coll is not None and item is not None
            served = {request_verb(coll, m, w) for m in methods for w in (False, True)}
            served |= {request_verb(item, m, False) for m in methods}
            assert served - {None} == published, (entry["name"], served, published)
            if entry["namespaced"]:  # all-namespaces path: reads only
                every = parse_resource_path(f"{prefix}/{plural}".split("/"))
                assert every is not None
                assert {request_verb(every, m, w) for m in methods for w in (False, True)} - {None} == {
                    "list",
                    "watch",
                } & published
    namespaces = next(r for r in docs[0]["resources"] if r["name"] == "namespaces")
    assert "deletecollection" not in namespaces["verbs"]


# --- case 3: 500 instead of 400 ----------------------------------------------------------------


def _deep_json(levels: int) -> bytes:
    return b'{"a":' * levels + b"1" + b"}" * levels


DEEP_CASES: list[tuple[str, str, str, dict[str, Any], str]] = [
    # (id, method, path, request kwargs, text the message must contain)
    (
        "watch-timeout-400-digits",
        "GET",
        f"/api/v1/namespaces/{NS_A}/configmaps",
        {"params": {"watch": "1", "timeoutSeconds": "9" * 400}},
        "value out of range",
    ),
    (
        "yaml-nested-10000",
        "POST",
        f"/api/v1/namespaces/{NS_A}/configmaps",
        {
            "content": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deep}\nx: " + b"[" * 10_000 + b"]" * 10_000,
            "headers": {"Content-Type": "application/yaml"},
        },
        "exceeded max depth",
    ),
    (
        "yaml-block-nested",
        "POST",
        f"/api/v1/namespaces/{NS_A}/configmaps",
        {
            "content": b"metadata: {name: deep}\nx:\n  " + b"- " * 5000 + b"y\n",
            "headers": {"Content-Type": "application/yaml"},
        },
        "exceeded max depth",
    ),
    (
        "json-nested-1020",
        "POST",
        f"/api/v1/namespaces/{NS_A}/configmaps",
        {
            "content": b'{"metadata":{"name":"deep"},"x":' + _deep_json(1020) + b"}",
            "headers": {"Content-Type": "application/json"},
        },
        "exceeded max depth",
    ),
    (
        "json-nested-200",
        "PUT",
        f"/api/v1/namespaces/{NS_A}/configmaps/keep",
        {
            "content": b'{"metadata":{"name":"keep"},"x":' + _deep_json(200) + b"}",
            "headers": {"Content-Type": "application/json"},
        },
        "exceeded max depth",
    ),
    (
        "merge-patch-nested-1020",
        "PATCH",
        f"/api/v1/namespaces/{NS_A}/configmaps/keep",
        {"content": b'{"data":' + _deep_json(1020) + b"}", "headers": {"Content-Type": "application/merge-patch+json"}},
        "exceeded max depth",
    ),
    (
        "merge-patch-nested-300",
        "PATCH",
        f"/api/v1/namespaces/{NS_A}/configmaps/keep",
        {"content": b'{"data":' + _deep_json(300) + b"}", "headers": {"Content-Type": "application/merge-patch+json"}},
        "exceeded max depth",
    ),
    (
        "strategic-merge-patch-nested",
        "PATCH",
        f"/api/v1/namespaces/{NS_A}/configmaps/keep",
        {
            "content": b'{"data":' + _deep_json(500) + b"}",
            "headers": {"Content-Type": "application/strategic-merge-patch+json"},
        },
        "exceeded max depth",
    ),
    (
        "json-patch-nested",
        "PATCH",
        f"/api/v1/namespaces/{NS_A}/configmaps/keep",
        {
            "content": b'[{"op":"add","path":"/data/y","value":' + _deep_json(500) + b"}]",
            "headers": {"Content-Type": "application/json-patch+json"},
        },
        "exceeded max depth",
    ),
    (
        "apply-patch-yaml-nested",
        "PATCH",
        f"/api/v1/namespaces/{NS_A}/configmaps/keep",
        {
            "content": b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: keep}\ndata: " + b"[" * 5000 + b"]" * 5000,
            "headers": {"Content-Type": "application/apply-patch+yaml"},
        },
        "exceeded max depth",
    ),
]


@pytest.mark.parametrize(("method", "path", "kw", "text"), [c[1:] for c in DEEP_CASES], ids=[c[0] for c in DEEP_CASES])
def test_deep_or_huge_input_is_400(
    server: RunningApiServer, http: httpx.Client, method: str, path: str, kw: dict[str, Any], text: str
) -> None:
    before = snapshot(http)
    body = assert_status(http.request(method, path, **kw), 400, "BadRequest")
    assert text in body["message"], body["message"]
    assert len(body["message"]) < 2048
    assert snapshot(http) == before
    assert_alive(server, http)


NOT_A_STRUCT = (
    'Namespace in version "v1" cannot be handled as a Namespace: json: cannot unmarshal string into Go struct '
    "field Namespace.spec of type v1.NamespaceSpec"
)


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH-merge", "PATCH-json"])
def test_namespace_spec_that_is_not_an_object_is_refused(
    server: RunningApiServer, http: httpx.Client, method: str
) -> None:
    before = snapshot(http)
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS_B}, "spec": "x"}
    if method == "POST":
        ns["metadata"]["name"] = "hostile-spec"
        r = http.post("/api/v1/namespaces", json=ns)
    elif method == "PUT":
        r = http.put(f"/api/v1/namespaces/{NS_B}", json=ns)
    elif method == "PATCH-merge":
        r = http.patch(
            f"/api/v1/namespaces/{NS_B}",
            content=b'{"spec":"x"}',
            headers={"Content-Type": "application/merge-patch+json"},
        )
    else:
        r = http.patch(
            f"/api/v1/namespaces/{NS_B}",
            content=b'[{"op":"replace","path":"/spec","value":"x"}]',
            headers={"Content-Type": "application/json-patch+json"},
        )
    if method.startswith("PATCH"):
        # A patch whose result does not decode is 422 Invalid on field "patch", quoting the patched
        # object (handlers/patch.go: field.Invalid(field.NewPath("patch"), …)); see controlplane/api/structural.py.
        msg = assert_status(r, 422, "Invalid")["message"]
        assert msg.startswith('"" is invalid: patch: Invalid value: ')
        assert msg.endswith(NOT_A_STRUCT.split(": ", 1)[1])
    else:
        assert assert_status(r, 400, "BadRequest")["message"] == NOT_A_STRUCT
    assert snapshot(http) == before
    assert http.get("/api/v1/namespaces/hostile-spec").status_code == 404
    assert_alive(server, http)


def test_stored_namespace_with_bad_spec_can_still_be_deleted() -> None:
    """Data stored before the check (spec a string): deleting and finalizing it is no 500."""
    from controlplane.api import registry
    from controlplane.apiserver.admission import Admission
    from controlplane.apiserver.allocators import ServiceAllocators
    from controlplane.apiserver.resources import ResourceOps
    from controlplane.storage.memory import MemoryStore

    store = MemoryStore()
    ops = ResourceOps(store, Admission(store, ServiceAllocators("10.96.0.0/12", "30000-32767")))
    ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "old", "uid": "u1"}, "spec": "x"}
    store.create(registry.NAMESPACES.storage_key("old"), orjson.dumps(ns))
    ops.delete(registry.NAMESPACES, None, "old", {})
    assert store.get(registry.NAMESPACES.storage_key("old")) is None  # no spec.finalizers: gone at once
    # One that waits for a finalizer: marked Terminating, then finalized through /finalize.
    ns["metadata"] = {"name": "older", "uid": "u2", "finalizers": ["example.com/wait"]}
    store.create(registry.NAMESPACES.storage_key("older"), orjson.dumps(ns))
    marked = ops.delete(registry.NAMESPACES, None, "older", {})
    assert marked["status"]["phase"] == "Terminating"
    done = ops.finalize_namespace("older", {"metadata": {"name": "older"}, "spec": {"finalizers": []}})
    assert done["spec"] == {}


# --- case 5: smaller deviations ----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/version", "/healthz", "/livez", "/readyz"])
def test_public_info_needs_no_credentials(server: RunningApiServer, path: str) -> None:
    with server.http(auth=False) as anon:
        r = anon.get(path)
        assert r.status_code == 200, r.text
        if path == "/version":
            assert r.json()["major"] == "1"
        assert anon.get("/api/v1/namespaces").status_code == 401  # the rest still needs credentials


def test_kubectl_version_without_credentials(server: RunningApiServer, tmp_path: Path) -> None:
    """kubectl with a kubeconfig that has no user still shows the server's version."""
    kubeconfig = tmp_path / "anon.kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": server.url, "certificate-authority": str(server.ca_file)}}
                ],
                # A user kubectl will not prompt for, whose requests carry no credential the
                # server knows (Basic auth, which kube-apiserver has no authenticator for).
                "users": [{"name": "nobody", "user": {"username": "nobody"}}],
                "contexts": [{"name": "c", "context": {"cluster": "c", "user": "nobody"}}],
                "current-context": "c",
            }
        )
    )
    r = subprocess.run(
        [
            kubectl_binary("1.33"),
            "--kubeconfig",
            str(kubeconfig),
            "--cache-dir",
            str(tmp_path / "cache"),
            "version",
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["serverVersion"]["major"] == "1"


def _tls(server: RunningApiServer) -> ssl.SSLSocket:
    ctx = ssl.create_default_context(cafile=str(server.ca_file))
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=15)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def _read_until_closed(sock: ssl.SSLSocket, deadline: float) -> bytes:
    """Everything the server sends until it closes the connection (AssertionError at the deadline)."""
    out = b""
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            raise AssertionError(f"the server did not close the connection; got {out[:200]!r}") from None
        except (ConnectionResetError, ssl.SSLError):
            return out
        if not chunk:
            return out
        out += chunk


@pytest.mark.parametrize(
    ("sent", "answered"),
    [
        (b"", b""),  # connects and says nothing
        (b"GET /version HTTP/1.1\r\nHost: x\r\n", b""),  # headers never finished
        # a keep-alive connection: one request served, the next one stalls in its headers
        (b"GET /version HTTP/1.1\r\nHost: x\r\n\r\nGET /version HTTP/1.1\r\nHost: x\r\n", b"HTTP/1.1 200 "),
    ],
    ids=["silent", "partial-headers", "second-request-stalls"],
)
def test_connection_that_never_finishes_its_headers_is_closed(
    server: RunningApiServer, sent: bytes, answered: bytes
) -> None:
    """The test server's header read timeout is 2 s (kube-apiserver's: 32 s)."""
    with _tls(server) as sock:
        start = time.monotonic()
        sock.sendall(sent)
        got = _read_until_closed(sock, start + 15)
        elapsed = time.monotonic() - start
    assert got.startswith(answered) and (answered or got == b""), got[:200]
    assert got.count(b"HTTP/1.1 ") == (1 if answered else 0)
    assert 1.5 <= elapsed < 15, elapsed


def _raw_request(server: RunningApiServer, header_bytes: int) -> bytes:
    headers = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"a" * 8000) for i in range(header_bytes // 8016))
    request = b"GET /version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers + b"\r\n"
    with _tls(server) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass  # the server answered and closed before reading everything
        return _read_until_closed(sock, time.monotonic() + 15)


def test_request_headers_over_1mib_are_431(server: RunningApiServer, http: httpx.Client) -> None:
    before = snapshot(http)
    answer = _raw_request(server, 2 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), answer[:200]
    assert _raw_request(server, 512 * 1024).startswith(b"HTTP/1.1 200 "), "headers under the limit are served"
    assert snapshot(http) == before
    assert_alive(server, http)


def test_negative_limit_is_ignored(http: httpx.Client) -> None:
    full = http.get("/api/v1/configmaps").json()["items"]
    r = http.get("/api/v1/configmaps", params={"limit": "-1"})
    assert r.status_code == 200, r.text
    assert "continue" not in r.json()["metadata"]
    assert {i["metadata"]["uid"] for i in r.json()["items"]} == {i["metadata"]["uid"] for i in full}


def test_json_patch_test_failure_message(server: RunningApiServer, http: httpx.Client) -> None:
    before = snapshot(http)
    r = http.patch(
        f"/api/v1/namespaces/{NS_A}/configmaps/keep",
        content=b'[{"op":"test","path":"/data/x","value":3}]',
        headers={"Content-Type": "application/json-patch+json"},
    )
    body = assert_status(r, 422, "Invalid")
    assert body["message"].endswith("testing value /data/x failed: test failed"), body["message"]
    assert "class" not in body["message"]
    assert snapshot(http) == before
    assert_alive(server, http)


# --- crash containment -------------------------------------------------------------------------


def test_unexpected_exception_is_a_500_status(monkeypatch: pytest.MonkeyPatch) -> None:
    """Anything a handler still raises becomes a 500 Status without a traceback; the app goes on."""
    from controlplane.apiserver.app import ApiServer
    from controlplane.apiserver.options import ServerOptions
    from controlplane.storage.memory import MemoryStore

    api = ApiServer(MemoryStore(), ServerOptions(bootstrap=False))

    async def boom(req: Any, send: Any) -> tuple[str, str]:
        raise RecursionError("maximum recursion depth exceeded in a handler")

    monkeypatch.setattr(api.router, "dispatch", boom)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    async def call() -> None:
        scope = {"type": "http", "method": "GET", "path": "/api/v1/pods", "query_string": b"", "headers": []}
        await api(scope, receive, send)
        await api(scope, receive, send)  # and again: nothing is left broken

    try:
        asyncio.run(call())
    finally:
        api.pool.shutdown(wait=False)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    bodies = [orjson.loads(m["body"]) for m in sent if m["type"] == "http.response.body"]
    assert [s["status"] for s in starts] == [500, 500]
    for b in bodies:
        assert b["kind"] == "Status" and b["reason"] == "InternalError" and b["code"] == 500
        assert "Traceback" not in b["message"] and "recursion" not in b["message"]


def test_int64_grace_period_is_no_500(server: RunningApiServer, http: httpx.Client) -> None:
    """The largest int64 gracePeriodSeconds on a pod bound to a node: marked for deletion, no overflow."""
    pods = f"/api/v1/namespaces/{NS_A}/pods"
    pod = {"metadata": {"name": "slow"}, "spec": {"nodeName": "nowhere", "containers": [{"name": "c", "image": "i"}]}}
    assert http.post(pods, json=pod).status_code == 201
    try:
        r = http.delete(f"{pods}/slow", params={"gracePeriodSeconds": str(2**63 - 1)})
        assert r.status_code == 200, r.text
        md = r.json()["metadata"]
        assert md["deletionGracePeriodSeconds"] == 2**63 - 1 and md["deletionTimestamp"]
        r = http.delete(f"{pods}/slow", params={"gracePeriodSeconds": "9" * 30})
        assert_status(r, 400, "BadRequest")
        assert_alive(server, http)
    finally:
        http.delete(f"{pods}/slow", params={"gracePeriodSeconds": "0"})
    assert http.get(f"{pods}/slow").status_code == 404


def test_kubectl_delete_across_namespaces_still_works(
    server: RunningApiServer, http: httpx.Client, tmp_path: Path
) -> None:
    """kubectl never sends a namespace-less collection DELETE: ``delete -A -l`` deletes object by object."""
    cm = {"metadata": {"name": "by-kubectl", "labels": {"hostile": "kubectl"}}}
    for ns in (NS_A, NS_B):
        assert http.post(f"/api/v1/namespaces/{ns}/configmaps", json=cm).status_code == 201
    try:
        r = subprocess.run(
            [
                *(
                    kubectl_binary("1.33"),
                    "--kubeconfig",
                    str(server.kubeconfig),
                    "--cache-dir",
                    str(tmp_path / "cache"),
                ),
                *("delete", "configmaps", "-A", "-l", "hostile=kubectl"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert r.returncode == 0, r.stderr
        assert r.stdout.count('configmap "by-kubectl" deleted') == 2, r.stdout
        assert http.get("/api/v1/configmaps", params={"labelSelector": "hostile=kubectl"}).json()["items"] == []
        assert {(NS_A, "keep"), (NS_B, "keep")} <= {
            (p_ns, n) for p, p_ns, n, _ in snapshot(http) if p == "/api/v1/configmaps"
        }
    finally:
        for ns in (NS_A, NS_B):
            http.delete(f"/api/v1/namespaces/{ns}/configmaps/by-kubectl")
