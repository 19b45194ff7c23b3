"""Delegated authn/authz of the node components' debug endpoints (controlplane/client/delegated.py).

The API server is a fake ``post``: tokens "admin-token" (user alice, group lab-admins) and
"viewer-token" (user bob) are valid; alice may ``get`` /debug/*, bob may not. The HTTPS tests run a
real server on 127.0.0.1 with certificates from a throwaway CA (CN "carol", O "lab-admins").
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from controlplane import pki
from controlplane.client import delegated

USERS = {
    "admin-token": {"username": "alice", "uid": "1", "groups": ["lab-admins"]},
    "viewer-token": {"username": "bob", "groups": []},
}


class FakeApiServer:
    def __init__(self) -> None:
        self.posts: list[tuple[str, dict[str, Any]]] = []
        self.down = False

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.posts.append((path, body))
        if self.down:
            raise ConnectionRefusedError("connection refused")
        spec = body["spec"]
        if path == delegated.TOKEN_REVIEWS:
            user = USERS.get(spec["token"])
            return {**body, "status": {"authenticated": True, "user": user} if user else {"authenticated": False}}
        assert path == delegated.SUBJECT_ACCESS_REVIEWS
        ok = "lab-admins" in spec["groups"] and spec["nonResourceAttributes"]["path"].startswith("/debug/")
        return {**body, "status": {"allowed": ok, "reason": "" if ok else "no RBAC policy matched"}}


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def cert(cn: str, orgs: tuple[str, ...] = ()) -> dict[str, Any]:
    """A peer certificate as ``ssl`` decodes it."""
    return {"subject": ((("commonName", cn),), *((("organizationName", o),) for o in orgs))}


@pytest.fixture
def api() -> FakeApiServer:
    return FakeApiServer()


def test_no_credentials_is_401_unauthorized(api: FakeApiServer) -> None:
    err = delegated.DelegatedAuth(api.post).check(None, "", "GET", "/debug/rules")
    assert err is not None and err.code == 401
    assert err.to_status()["reason"] == "Unauthorized" and err.to_status()["message"] == "Unauthorized"
    assert api.posts == []  # nothing to review


@pytest.mark.parametrize("header", ["Bearer wrong", "Basic YWxpY2U6eA==", "Bearer ", "bearer"])
def test_a_bad_token_or_another_scheme_is_401(api: FakeApiServer, header: str) -> None:
    err = delegated.DelegatedAuth(api.post).check(None, header, "GET", "/debug/rules")
    assert err is not None and err.code == 401


def test_a_valid_token_of_a_user_without_permission_is_403_in_kubernetes_words(api: FakeApiServer) -> None:
    err = delegated.DelegatedAuth(api.post).check(None, "Bearer viewer-token", "GET", "/debug/network")
    assert err is not None and err.code == 403
    status = err.to_status()
    assert status["reason"] == "Forbidden"
    assert status["message"] == 'forbidden: User "bob" cannot get path "/debug/network": no RBAC policy matched'
    sar = api.posts[-1][1]["spec"]
    assert sar["user"] == "bob" and sar["nonResourceAttributes"] == {"path": "/debug/network", "verb": "get"}
    assert "system:authenticated" in sar["groups"]


def test_an_authorized_token_passes_and_both_reviews_are_cached(api: FakeApiServer) -> None:
    clock = Clock()
    auth = delegated.DelegatedAuth(api.post, clock=clock)
    assert auth.check(None, "Bearer admin-token", "GET", "/debug/rules") is None
    assert auth.check(None, "Bearer admin-token", "GET", "/debug/rules") is None
    assert [p for p, _ in api.posts] == [delegated.TOKEN_REVIEWS, delegated.SUBJECT_ACCESS_REVIEWS]
    assert api.posts[1][1]["spec"]["uid"] == "1"
    clock.t += delegated.TOKEN_TTL + 1  # expired: asked again
    assert auth.check(None, "Bearer admin-token", "GET", "/debug/rules") is None
    assert len(api.posts) == 4


def test_a_client_certificate_is_its_cn_and_o_without_a_token_review(api: FakeApiServer) -> None:
    auth = delegated.DelegatedAuth(api.post)
    assert auth.check(cert("carol", ("lab-admins",)), "", "GET", "/debug/rules") is None
    assert [p for p, _ in api.posts] == [delegated.SUBJECT_ACCESS_REVIEWS]
    assert api.posts[0][1]["spec"]["user"] == "carol"
    err = auth.check(cert("dave"), "", "GET", "/debug/rules")
    assert err is not None and err.code == 403 and 'User "dave"' in err.message


def test_health_paths_need_nothing_and_other_methods_use_their_verb(api: FakeApiServer) -> None:
    auth = delegated.DelegatedAuth(api.post)
    assert auth.check(None, "", "GET", "/healthz") is None
    err = auth.check(None, "Bearer viewer-token", "POST", "/debug/rules")
    assert err is not None and 'cannot post path "/debug/rules"' in err.message


def test_an_unreachable_api_server_never_allows_and_is_not_cached(api: FakeApiServer) -> None:
    auth = delegated.DelegatedAuth(api.post)
    api.down = True
    err = auth.check(None, "Bearer admin-token", "GET", "/debug/rules")
    assert err is not None and err.code == 401
    err = auth.check(cert("carol", ("lab-admins",)), "", "GET", "/debug/rules")
    assert err is not None and err.code == 403
    api.down = False
    assert auth.check(cert("carol", ("lab-admins",)), "", "GET", "/debug/rules") is None


# --- over HTTPS ---------------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path, api: FakeApiServer) -> Any:
    ca = pki.new_ca("test-ca")
    (tmp_path / "ca.crt").write_bytes(ca.cert_pem)
    scert, skey = pki.issue_cert(ca, "node", [], ips=["127.0.0.1"], server=True)
    (tmp_path / "s.crt").write_bytes(scert)
    (tmp_path / "s.key").write_bytes(skey)
    ccert, ckey = pki.issue_cert(ca, "carol", ["lab-admins"])
    (tmp_path / "c.crt").write_bytes(ccert)
    (tmp_path / "c.key").write_bytes(ckey)

    def route(path: str, query: dict[str, list[str]]) -> tuple[int, str, bytes]:
        if path == "/debug/rules":
            return 200, "text/plain", b"*nat\nCOMMIT\n"
        if path == "/healthz":
            return 200, "text/plain", b"ok"
        from controlplane.api import errors

        raise errors.NotFound("the server could not find the requested resource")

    ctx = delegated.server_context(tmp_path / "s.crt", tmp_path / "s.key", tmp_path / "ca.crt")
    server = delegated.SecureServer(route, delegated.DelegatedAuth(api.post), ctx, "127.0.0.1:0", "test-debug").start()
    assert server.bound.wait(10)
    yield server, tmp_path
    server.shutdown()


def fetch(url: str, tmp: Path, *, client_cert: bool = False, token: str = "") -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(tmp / "ca.crt"))
    if client_cert:
        ctx.load_cert_chain(str(tmp / "c.crt"), str(tmp / "c.key"))
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_over_https_401_403_200_and_404(served: Any) -> None:
    server, tmp = served
    base = f"https://127.0.0.1:{server.port}"
    code, body = fetch(base + "/debug/rules", tmp)
    assert code == 401 and json.loads(body)["reason"] == "Unauthorized"
    code, body = fetch(base + "/debug/rules", tmp, token="viewer-token")
    assert code == 403 and json.loads(body)["message"].startswith('forbidden: User "bob" cannot get path')
    assert fetch(base + "/debug/rules", tmp, token="admin-token") == (200, b"*nat\nCOMMIT\n")
    assert fetch(base + "/debug/rules", tmp, client_cert=True) == (200, b"*nat\nCOMMIT\n")
    assert fetch(base + "/healthz", tmp) == (200, b"ok")
    code, body = fetch(base + "/debug/nothing", tmp, client_cert=True)
    assert code == 404 and json.loads(body)["reason"] == "NotFound"
