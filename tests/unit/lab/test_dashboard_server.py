"""The dashboard's HTTP side (lab/dashboard/server.py): authentication, read-only, bad input."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from lab.dashboard import cli, server
from lab.dashboard.hub import State

TOKEN = "t" * 20 + "secret"
STATE = State(7, "<svg id='x'></svg>", [], [], [], [], "metrics not available")


class FakeSource:
    def __init__(self, state: State | None) -> None:
        self.state = state
        self.subs: list[asyncio.Queue[State]] = []

    def subscribe(self) -> asyncio.Queue[State]:
        q: asyncio.Queue[State] = asyncio.Queue()
        self.subs.append(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[State]) -> None:
        self.subs.remove(q)


class FakeInspector:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def trace(self, namespace: str, name: str, port: str) -> dict[str, Any]:
        self.calls.append(("trace", namespace, name, port))
        if name == "missing":
            raise server.DashboardError(404, f"no service {namespace}/{name}")
        return {"service": f"{namespace}/{name}", "port": port or "80", "command": "kubelab trace", "text": "DNAT"}

    def pod(self, namespace: str, name: str) -> dict[str, Any]:
        self.calls.append(("pod", namespace, name))
        return {"pod": f"{namespace}/{name}", "netns": "default_hello_1234abcd"}

    async def logs(self, namespace: str, name: str, container: str) -> AsyncIterator[str]:
        self.calls.append(("logs", namespace, name, container))
        for line in ("first line", "second line"):
            yield line


class Client:
    """A blocking face on httpx's in-process ASGI transport; keeps cookies across calls like a browser."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cookies = httpx.Cookies()

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                follow_redirects: bool = True) -> httpx.Response:  # fmt: skip
        async def go() -> httpx.Response:
            # the app is served over HTTPS in the lab: the cookie is Secure, so this speaks https too
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="https://testserver",
                                         cookies=self.cookies, follow_redirects=follow_redirects) as c:  # fmt: skip
                r = await c.request(method, path, headers=headers)
                self.cookies = c.cookies
                return r

        return asyncio.run(go())

    def get(self, path: str, headers: dict[str, str] | None = None, follow_redirects: bool = True) -> httpx.Response:
        return self.request("GET", path, headers, follow_redirects)


def client(state: State | None = STATE) -> tuple[Client, FakeInspector]:
    insp = FakeInspector()
    return Client(server.create_app(FakeSource(state), TOKEN, insp)), insp


BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.mark.parametrize("path", ["/", "/api/state", "/api/stream", "/static/app.js", "/api/trace/default/hello",
                                  "/api/pod/default/hello", "/api/logs/default/hello", "/no/such/path"])  # fmt: skip
def test_unauthenticated_requests_get_401_with_a_status(path: str) -> None:
    c, insp = client()
    for headers in ({}, {"Authorization": "Bearer wrong-token-wrong-token"}, {"Authorization": "Basic dXNlcjpwdw=="}):
        r = c.get(path, headers=headers)
        assert r.status_code == 401, (path, headers)
        body = r.json()
        assert (body["kind"], body["reason"], body["code"]) == ("Status", "Unauthorized", 401)
        assert r.headers["www-authenticate"].startswith("Bearer")
    c.cookies.set(server.COOKIE, "not-the-token")
    assert c.get(path).status_code == 401
    assert insp.calls == []  # nothing was looked up for anyone unauthenticated


def test_the_token_url_sets_a_cookie_and_leaves_the_address_bar() -> None:
    c, _ = client()
    assert c.get("/?token=wrong", follow_redirects=False).status_code == 401
    r = c.get(f"/?token={TOKEN}", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=strict" in cookie
    page = c.get("/")  # the cookie now authenticates
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert c.get("/api/state").json()["version"] == 7


def test_bearer_token_reads_the_state_and_the_health_needs_none() -> None:
    c, _ = client()
    r = c.get("/api/state", headers=BEARER)
    assert r.status_code == 200 and r.json()["svg"] == "<svg id='x'></svg>"
    assert r.json()["metrics"] == "metrics not available"
    assert c.get("/healthz").text == "ok"
    empty, _ = client(None)
    assert empty.get("/api/state", headers=BEARER).status_code == 503


def test_read_only_no_write_method_is_served() -> None:
    c, insp = client()
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        assert c.request(method, "/api/pod/default/hello", headers=BEARER).status_code == 405
        assert c.request(method, "/api/pod/default/hello").status_code == 401
    assert insp.calls == []


def test_clicks_reach_the_inspector_and_bad_names_get_400() -> None:
    c, insp = client()
    assert c.get("/api/trace/default/hello", headers=BEARER).json()["text"] == "DNAT"
    assert c.get("/api/pod/default/hello", headers=BEARER).json()["netns"] == "default_hello_1234abcd"
    r = c.get("/api/trace/default/missing", headers=BEARER)
    assert r.status_code == 404 and r.json()["reason"] == "NotFound"
    for bad in ("/api/pod/default/Hello_World", "/api/trace/-x/hello", "/api/trace/default/hello?port=80%3Brm"):
        r = c.get(bad, headers=BEARER)
        assert r.status_code == 400 and r.json()["reason"] == "BadRequest", bad
    assert insp.calls == [("trace", "default", "hello", ""), ("pod", "default", "hello"),
                          ("trace", "default", "missing", "")]  # fmt: skip
    assert c.get("/static/../server.py", headers=BEARER).status_code == 404


def test_logs_are_streamed_as_server_sent_events() -> None:
    c, insp = client()
    r = c.get("/api/logs/default/hello?container=web", headers=BEARER)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert "event: line\ndata: first line\n\n" in r.text and r.text.endswith("event: end\ndata: \n\n")
    assert insp.calls == [("logs", "default", "hello", "web")]


def test_sse_frames_multi_line_data() -> None:
    assert server.sse("line", "a\nb") == b"event: line\ndata: a\ndata: b\n\n"
    assert server.sse("state", {"v": 1}) == b'event: state\ndata: {"v":1}\n\n'


def test_short_tokens_and_wildcard_listen_addresses_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16"):
        server.create_app(FakeSource(None), "short")
    assert cli.parse_listen("192.168.56.1:8443") == ("192.168.56.1", 8443)
    for bad in ("0.0.0.0:8443", "192.168.56.1", "192.168.56.1:99999", ":8443"):
        with pytest.raises(ValueError):
            cli.parse_listen(bad)
