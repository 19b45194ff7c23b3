"""Delegated authentication and authorization for a node component's HTTPS debug endpoints.

Role: the one home of "who is asking, and may they?" for the endpoints the proxy
(``/debug/rules``) and the network agent (``/debug/network``) serve on the node's address, done
the way k8s.io/apiserver's delegating options do it for the kubelet's API and for every
component's secure port (``DelegatingAuthenticatorConfig`` and ``DelegatingAuthorizerConfig``):

1. TLS (``serve``): the server presents a certificate (the node's serving certificate); a client
   certificate is *optional* and, when given, verified by TLS against ``--client-ca-file``.
2. Authentication (``DelegatedAuth.authenticate``): a verified client certificate is the user of
   its CN with its O as groups (the x509 authenticator); else an ``Authorization: Bearer`` token
   is sent to the API server in a ``TokenReview`` (answers cached ``TOKEN_TTL``); else nobody:
   **401** ``Unauthorized`` (anonymous requests are refused, as with the kubelet's
   ``--anonymous-auth=false``). Every authenticated user also gets ``system:authenticated``.
3. Authorization (``DelegatedAuth.authorize``): a ``SubjectAccessReview`` for the non-resource
   URL with the request's verb (``get`` for GET), answers cached ``ALLOW_TTL``/``DENY_TTL``
   (the delegating authorizer's 10 s defaults); not allowed: **403** with k8s.io/apiserver's
   wording (``forbidden: User "x" cannot get path "/debug/rules"``).
   ``ALWAYS_ALLOW`` paths (``/healthz``, ``/readyz``, ``/livez``: the default of
   ``--authorization-always-allow-paths``) skip both checks.

``RequestHeader`` is the aggregated API server's variant of step 2 (the metrics server's): a
certificate from the front-proxy CA with an allowed CN speaks for the user in ``X-Remote-*``.

Errors are ``Status`` objects (``controlplane.api.errors``), as the generic API server writes them.

Invariants: the reviews go to the API server through ``post(path, body)`` (the component's own
client, which must be allowed to create ``tokenreviews`` and ``subjectaccessreviews``: Kubernetes'
``system:auth-delegator``); a failed review (API server down) is a 401/403 for that request, never
an allow, and is not cached.

Concurrency: ``serve`` runs a ``ThreadingHTTPServer`` (one daemon thread per connection, which
also runs the TLS handshake within ``HANDSHAKE_TIMEOUT``, so a silent client blocks only itself);
the caches are guarded by one lock. Standard library only: every node agent imports this.
"""

from __future__ import annotations

import contextlib
import json
import logging
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from controlplane.api import errors
from controlplane.client.failures import FailureLog

log = logging.getLogger(__name__)

TOKEN_TTL = 10.0  # delegating authenticator's token cache (--authentication-token-webhook-cache-ttl)
ALLOW_TTL = 10.0  # --authorization-webhook-cache-authorized-ttl of the delegating authorizer
DENY_TTL = 10.0  # --authorization-webhook-cache-unauthorized-ttl
ALWAYS_ALLOW = ("/healthz", "/readyz", "/livez")
HANDSHAKE_TIMEOUT = 10.0

TOKEN_REVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
SUBJECT_ACCESS_REVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"

Obj = dict[str, Any]
#: ``post(path, body)``: POST a review to the API server, return the decoded answer (raise on failure).
Post = Callable[[str, Obj], Any]
#: ``route(path, query)`` → (status code, content type, body); raise ``errors.ApiError`` for a Status.
Route = Callable[[str, dict[str, list[str]]], tuple[int, str, bytes]]


@dataclass(frozen=True)
class UserInfo:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: dict[str, list[str]] = field(default_factory=dict)


def _attrs(name: Any, key: str) -> list[str]:
    return [str(v) for rdn in name or () for k, v in rdn if k == key]


def user_from_cert(peer: Obj | None) -> UserInfo | None:
    """The x509 authenticator: a certificate TLS verified against the client CA → CN / O."""
    if not peer:
        return None
    cns = _attrs(peer.get("subject"), "commonName")
    if not cns or not cns[0]:
        return None
    return UserInfo(cns[0], tuple(_attrs(peer.get("subject"), "organizationName")))


def with_authenticated_group(user: UserInfo) -> UserInfo:
    """k8s.io/apiserver's ``AuthenticatedGroupAdder``: every authenticated user is in ``system:authenticated``."""
    if "system:authenticated" in user.groups:
        return user
    return UserInfo(user.name, (*user.groups, "system:authenticated"), user.uid, user.extra)


def user_from_request_headers(headers: Any) -> UserInfo | None:
    """The requestheader authenticator's headers: ``X-Remote-User``, ``X-Remote-Group`` (repeated),
    ``X-Remote-Extra-<key>`` (the key percent-decoded and lowercased). ``headers``: an
    ``email.message.Message`` (``http.server``'s), read with ``get``, ``get_all`` and ``items``."""
    name = headers.get("X-Remote-User", "")
    if not name:
        return None
    groups = tuple(headers.get_all("X-Remote-Group") or ())
    extra: dict[str, list[str]] = {}
    for k, v in headers.items():
        if k.lower().startswith("x-remote-extra-"):
            key = urllib.parse.unquote(k[len("x-remote-extra-") :]).lower()
            extra.setdefault(key, []).append(v)
    return UserInfo(name, groups, extra=extra)


@dataclass(frozen=True)
class RequestHeader:
    """k8s.io/apiserver's requestheader authentication, as an aggregated API server does it
    (``--requestheader-client-ca-file``, ``--requestheader-allowed-names``): a client certificate
    signed by the requestheader (front-proxy) CA whose CN is an allowed name speaks for the user
    in the ``X-Remote-*`` headers; any other verified certificate is its own CN/O (x509).

    TLS has already verified the chain against one of the two CAs, so the issuer's name tells
    which one signed it (the cluster CA and the front-proxy CA have distinct names).
    """

    issuers: tuple[Any, ...]  # subjects of the requestheader CA's certificates, as ssl decodes them
    allowed_names: tuple[str, ...] = ("front-proxy-client",)

    @classmethod
    def from_ca_file(cls, ca: Path, allowed_names: tuple[str, ...] = ("front-proxy-client",)) -> RequestHeader:
        rh = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # only to have ssl decode the CA file
        rh.load_verify_locations(str(ca))
        return cls(tuple(c["subject"] for c in rh.get_ca_certs()), allowed_names)

    def user(self, peer: Obj | None, headers: Any) -> UserInfo | None:
        """Who a request is from (``system:authenticated`` added), or None: 401."""
        if not peer:
            return None
        if peer.get("issuer") in self.issuers:
            cns = _attrs(peer.get("subject"), "commonName")
            if self.allowed_names and (cns[0] if cns else "") not in self.allowed_names:
                return None
            user = user_from_request_headers(headers)
        else:
            user = user_from_cert(peer)
        return with_authenticated_group(user) if user is not None else None


def subject_access_review(user: UserInfo, attributes_field: str, attributes: Obj) -> Obj:
    """The ``SubjectAccessReview`` a delegating authorizer posts: the user (name, groups, uid, extra)
    and ``attributes`` under ``attributes_field`` (``resourceAttributes`` or ``nonResourceAttributes``)."""
    spec: Obj = {"user": user.name, "groups": list(user.groups), attributes_field: attributes}
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = user.extra
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def forbidden(user: UserInfo, verb: str, path: str, reason: str = "") -> errors.Forbidden:
    """k8s.io/apiserver ``responsewriters.Forbidden`` for a non-resource request."""
    msg = f"forbidden: User {json.dumps(user.name)} cannot {verb} path {json.dumps(path)}"
    return errors.Forbidden(msg + (f": {reason}" if reason else ""))


class SarDecisions:
    """Delegated authorization's decisions: one ``SubjectAccessReview`` per distinct question, its
    answer kept ``ALLOW_TTL``/``DENY_TTL`` (the delegating authorizer's webhook cache).

    The one home of that cache for every delegating server here: ``DelegatedAuth`` (the node
    components' debug endpoints: non-resource paths) and the metrics server (resource attributes
    for ``metrics.k8s.io``). A review that fails (API server unreachable, the API not served) is a
    denial naming the cause, for that request only: it is not cached, never an allow.
    """

    def __init__(self, post: Post, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.post = post
        self.clock = clock
        self._lock = threading.Lock()
        self._decisions: dict[str, tuple[float, bool, str]] = {}

    def decide(self, review: Obj) -> tuple[bool, str]:
        """(allowed, reason) for a ``SubjectAccessReview`` body."""
        key = json.dumps(review["spec"], sort_keys=True)
        now = self.clock()
        with self._lock:
            hit = self._decisions.get(key)
            if hit is not None and hit[0] > now:
                return hit[1], hit[2]
        try:
            answer = self.post(SUBJECT_ACCESS_REVIEWS, review)
        except Exception as exc:  # not cached: the next request asks again
            log.warning("SubjectAccessReview failed: %s", exc)
            return False, f"the authorizer could not be reached: {exc}"
        status = (answer.get("status") or {}) if isinstance(answer, dict) else {}
        allowed = bool(status.get("allowed")) and not status.get("denied")
        reason = str(status.get("reason", ""))
        with self._lock:
            self._decisions[key] = (now + (ALLOW_TTL if allowed else DENY_TTL), allowed, reason)
        return allowed, reason


class DelegatedAuth:
    """Authenticate (certificate or TokenReview) and authorize (SubjectAccessReview) one request."""

    def __init__(self, post: Post, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.post = post
        self.clock = clock
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[float, UserInfo | None]] = {}
        self._sar = SarDecisions(post, clock=clock)

    # --- authentication ---------------------------------------------------------------------
    def authenticate(self, peer: Obj | None, authorization: str) -> UserInfo | None:
        user = user_from_cert(peer)
        if user is None:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                return None
            user = self._token_user(token.strip())
            if user is None:
                return None
        return with_authenticated_group(user)

    def _token_user(self, token: str) -> UserInfo | None:
        now = self.clock()
        with self._lock:
            hit = self._tokens.get(token)
            if hit is not None and hit[0] > now:
                return hit[1]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        try:
            answer = self.post(TOKEN_REVIEWS, body)
        except Exception as exc:  # the API server's trouble: this request is not authenticated
            log.warning("TokenReview failed: %s", exc)
            return None
        status = (answer or {}).get("status") or {} if isinstance(answer, dict) else {}
        user = None
        if status.get("authenticated"):
            u = status.get("user") or {}
            user = UserInfo(
                str(u.get("username", "")),
                tuple(u.get("groups") or ()),
                str(u.get("uid", "")),
                dict(u.get("extra") or {}),
            )
            if not user.name:
                user = None
        with self._lock:
            self._tokens[token] = (now + TOKEN_TTL, user)
        return user

    # --- authorization ----------------------------------------------------------------------
    @staticmethod
    def review(user: UserInfo, verb: str, path: str) -> Obj:
        return subject_access_review(user, "nonResourceAttributes", {"path": path, "verb": verb})

    def authorize(self, user: UserInfo, verb: str, path: str) -> tuple[bool, str]:
        return self._sar.decide(self.review(user, verb, path))

    def check(self, peer: Obj | None, authorization: str, method: str, path: str) -> errors.ApiError | None:
        """None: serve the request; else the Status error to answer (401 or 403)."""
        if path in ALWAYS_ALLOW:
            return None
        user = self.authenticate(peer, authorization)
        if user is None:
            return errors.Unauthorized("Unauthorized")
        verb = "get" if method in ("GET", "HEAD") else method.lower()
        allowed, reason = self.authorize(user, verb, path)
        return None if allowed else forbidden(user, verb, path, reason)


# --- the HTTPS server ---------------------------------------------------------------------------


def send(handler: BaseHTTPRequestHandler, code: int, ctype: str, body: bytes) -> None:
    """One whole answer (the node components' small HTTP servers answer this way, plain or TLS)."""
    handler.send_response(code)
    handler.send_header("Content-Type", ctype)
    handler.send_header("X-Content-Type-Options", "nosniff")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        # The TLS handshake on this connection's thread, with a deadline (see the module docstring).
        self.request.settimeout(HANDSHAKE_TIMEOUT)
        self.request.do_handshake()
        self.request.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("debug endpoint: " + format, *args)

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        send(self, code, ctype, body)

    def _error(self, e: errors.ApiError) -> None:
        self._send(e.code, "application/json", json.dumps(e.to_status()).encode())

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        try:
            peer = self.connection.getpeercert()  # type: ignore[attr-defined]
            denied = self.server.auth.check(peer, self.headers.get("Authorization", ""), "GET", url.path)
            if denied is not None:
                self._error(denied)
                return
            code, ctype, body = self.server.route(url.path, urllib.parse.parse_qs(url.query))
            self._send(code, ctype, body)
        except errors.ApiError as e:
            self._error(e)
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception:
            log.exception("serving %s", self.path)
            self._error(errors.ApiError("an internal error occurred"))

    def do_POST(self) -> None:
        self._error(errors.MethodNotAllowed("the server does not allow this method on the requested resource"))

    do_PUT = do_PATCH = do_DELETE = do_POST


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    auth: DelegatedAuth
    route: Route

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):  # failed handshakes and resets: the client's business
            log.debug("debug endpoint: connection from %s: %s", client_address, exc)
            return
        log.exception("debug endpoint: connection from %s failed", client_address)


def server_context(cert: Path, key: Path, client_ca: Path) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    ctx.verify_mode = ssl.CERT_OPTIONAL  # a bearer token is the other way in
    ctx.load_verify_locations(str(client_ca))
    ctx.num_tickets = 0  # nobody resumes sessions here (see noded/server.py on TLS 1.3 tickets)
    return ctx


def bind(route: Route, auth: DelegatedAuth, ctx: ssl.SSLContext, address: str) -> _Server:
    """Bind ``address`` (``host:port``; port 0 picks one) and return the server, not yet serving."""
    host, _, port = address.rpartition(":")
    httpd = _Server((host or "0.0.0.0", int(port or 0)), _Handler, bind_and_activate=False)
    httpd.allow_reuse_address = True
    try:
        httpd.server_bind()
        httpd.server_activate()
    except OSError:
        httpd.server_close()
        raise
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
    httpd.auth = auth
    httpd.route = route
    return httpd


class SecureServer:
    """``route`` served over HTTPS on ``address`` behind ``auth``; binding retried every ``retry`` s.

    A node address that is not there yet (the component started before the node's network) is one
    log line and a retry, as kube-proxy does with its healthz server, never a crash.
    """

    def __init__(
        self, route: Route, auth: DelegatedAuth, ctx: ssl.SSLContext, address: str, name: str, retry: float = 5.0
    ) -> None:
        self.route, self.auth, self.ctx, self.address, self.name = route, auth, ctx, address, name
        self.stop_event = threading.Event()
        self.bound = threading.Event()
        self.httpd: _Server | None = None
        self._failures = FailureLog(log, f"starting the {name} server on {address}", initial=retry, cap=retry)

    def start(self) -> SecureServer:
        threading.Thread(target=self._run, name=self.name, daemon=True).start()
        return self

    def _run(self) -> None:
        while not self.stop_event.is_set():
            try:
                httpd = bind(self.route, self.auth, self.ctx, self.address)
            except OSError as exc:
                self.stop_event.wait(self._failures.failure(exc))
                continue
            self._failures.success()
            self.httpd = httpd
            self.bound.set()
            log.info("%s: serving on https://%s:%d", self.name, *httpd.server_address[:2])
            httpd.serve_forever()
            return

    @property
    def port(self) -> int:
        return int(self.httpd.server_address[1]) if self.httpd is not None else 0

    def shutdown(self) -> None:
        self.stop_event.set()
        if self.httpd is not None:
            with contextlib.suppress(OSError):
                self.httpd.shutdown()
                self.httpd.server_close()


def client_poster(client: Any) -> Post:
    """``post`` for ``DelegatedAuth`` from a ``controlplane.client.rest.ApiClient``."""

    def post(path: str, body: Obj) -> Any:
        return client.request("POST", path, body=body, timeout=10)

    return post


__all__ = [
    "ALWAYS_ALLOW",
    "DelegatedAuth",
    "SarDecisions",
    "SecureServer",
    "UserInfo",
    "bind",
    "client_poster",
    "forbidden",
    "server_context",
    "user_from_cert",
]
