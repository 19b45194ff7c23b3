"""A Docker-Hub-style token server for tests: the ``realm`` a registry with token auth sends clients to.

The flow it serves (distribution's "token authentication specification", as Docker Hub runs it):
the registry answers an unauthenticated request with ``401`` and
``WWW-Authenticate: Bearer realm="http://127.0.0.1:P/token",service="...",scope="repository:R:pull"``;
the client calls ``GET /token?service=...&scope=...`` (anonymously, or with HTTP basic
credentials) and gets ``{"token": JWT, "access_token": JWT, "expires_in": .., "issued_at": ..}``;
it retries with ``Authorization: Bearer JWT``. The registry verifies the JWT's RS256 signature
with the certificate chain in the JWT header (``x5c``), which must lead to its ``rootcertbundle``.

Policy, like Docker Hub's: anonymous clients get ``pull`` on public repositories (``public``
holds fnmatch patterns) and an empty grant elsewhere (the registry then says "authentication
required"); known users get what they asked for on every repository; a wrong password gets 401.

``start_token_server(dir, users=..., public=...)`` writes the key and self-signed certificate
(``cryptography``) under ``dir``, serves on ``127.0.0.1:<free port>`` from a thread and returns a
``TokenServer``; ``.stop()`` shuts it down. ``.requests`` records (user or None, scopes) per call.
"""

from __future__ import annotations

import base64
import datetime
import fnmatch
import json
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

SERVICE = "kubelab-test-registry"
ISSUER = "kubelab-test-token-issuer"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate
    cert_path: Path
    users: dict[str, str]
    public: list[str]
    service: str = SERVICE
    issuer: str = ISSUER
    requests: list[tuple[str | None, list[str]]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    thread: threading.Thread | None = None

    @property
    def realm(self) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/token"

    # ---- policy ----------------------------------------------------------------------------

    def grant(self, user: str | None, scope: str) -> dict[str, Any] | None:
        """The access entry for one ``type:name:actions`` scope (None: nothing granted)."""
        parts = scope.split(":")
        if len(parts) < 3 or parts[0] != "repository":
            return None
        name, wanted = ":".join(parts[1:-1]), parts[-1].split(",")
        if user is not None:
            actions = wanted
        elif any(fnmatch.fnmatchcase(name, p) for p in self.public):
            actions = [a for a in wanted if a == "pull"]
        else:
            actions = []
        return {"type": "repository", "name": name, "actions": actions} if actions else None

    def issue(self, user: str | None, scopes: Iterable[str]) -> str:
        now = int(time.time())
        access = [g for s in scopes if (g := self.grant(user, s)) is not None]
        claims = {
            "iss": self.issuer,
            "sub": user or "",
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": secrets.token_hex(8),
            "access": access,
        }
        der = self.cert.public_bytes(serialization.Encoding.DER)
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(der).decode()]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        sig = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(sig)}"

    def authenticate(self, header: str | None) -> tuple[bool, str | None]:
        """(ok, user): no header is an anonymous success; bad credentials are a failure."""
        if not header:
            return True, None
        kind, _, value = header.partition(" ")
        if kind.lower() != "basic":
            return False, None
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return False, None
        return (self.users.get(user) == password and user in self.users), user

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.thread is not None:
            self.thread.join(5)


def _handler(ts: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet tests; ``ts.requests`` records what matters

        def _reply(self, code: int, body: Mapping[str, Any], extra: Mapping[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            if url.path != "/token":
                self._reply(404, {"details": "not found"})
                return
            query = parse_qs(url.query)
            if query.get("service", [ts.service])[0] != ts.service:
                self._reply(400, {"details": "unknown service"})
                return
            ok, user = ts.authenticate(self.headers.get("Authorization"))
            scopes = [s for value in query.get("scope", []) for s in value.split(" ") if s]
            ts.requests.append((user, scopes))
            if not ok:
                self._reply(
                    401,
                    {"details": "incorrect username or password"},
                    {"WWW-Authenticate": f'Basic realm="{ts.realm}"'},
                )
                return
            token = ts.issue(user, scopes)
            issued = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            self._reply(200, {"token": token, "access_token": token, "expires_in": 300, "issued_at": issued})

    return Handler


def start_token_server(
    directory: Path, *, users: Mapping[str, str] | None = None, public: Iterable[str] = ("*",)
) -> TokenServer:
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubelab test token signer")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "token-signer.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    ts = TokenServer(key=key, cert=cert, cert_path=cert_path, users=dict(users or {}), public=list(public))
    ts.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(ts))
    ts.server.daemon_threads = True
    ts.thread = threading.Thread(target=ts.server.serve_forever, name="token-server", daemon=True)
    ts.thread.start()
    return ts
