"""Authentication and authorization: who is calling, and may they do this.

Role: turn a request into a ``UserInfo`` (x509 client certificate signed by the cluster CA, a
bearer token from a static token file in kube-apiserver's CSV format, or a ServiceAccount token —
a JWT checked by ``satokens.TokenVerifier``) and ask the ``Authorizer``
hook whether that user may perform the request. Unauthenticated requests get 401, refused ones 403.

x509 works below ASGI: uvicorn verifies the client certificate during the TLS handshake (against
the cluster CA) but does not put it into the ASGI scope, so the server's protocol classes record
each TLS connection's subject in ``PeerIdentities``, keyed by the peer address that the scope does
carry (``scope["client"]``), and drop it when the connection closes.

Invariants: a certificate's CN is the user name and its O entries are the groups (Kubernetes'
convention); every authenticated user is also in ``system:authenticated``.

Concurrency: ``PeerIdentities`` is written from the event loop (connection made/lost) and read from
the event loop (request start); a lock makes it safe from threads too.
"""

from __future__ import annotations

import csv
import hmac
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class UserInfo:
    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)


ANONYMOUS = UserInfo("system:anonymous", groups=("system:unauthenticated",))


@dataclass(frozen=True)
class RequestAttributes:
    """What the authorizer sees (Kubernetes' authorizer.Attributes, trimmed)."""

    verb: str  # get list watch create update patch delete deletecollection
    group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool = True


class Authorizer(Protocol):
    def authorize(self, user: UserInfo, attrs: RequestAttributes) -> tuple[bool, str]:
        """(allowed, reason)."""
        ...


class AllowAuthenticated:
    """The default policy: any authenticated user may do anything (RBAC comes later)."""

    def authorize(self, user: UserInfo, attrs: RequestAttributes) -> tuple[bool, str]:
        if "system:unauthenticated" in user.groups:
            return False, "anonymous requests are not allowed"
        return True, ""


def user_from_subject(subject: Any) -> UserInfo | None:
    """From ``ssl.SSLSocket.getpeercert()['subject']`` (tuples of RDNs) to a user."""
    cn = ""
    orgs: list[str] = []
    for rdn in subject or ():
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                orgs.append(value)
    if not cn:
        return None
    return UserInfo(cn, groups=(*orgs, "system:authenticated"))


class PeerIdentities:
    """TLS peer address → verified client-certificate user."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_peer: dict[tuple[str, int], UserInfo] = {}

    def note(self, transport: Any) -> tuple[str, int] | None:
        peer = transport.get_extra_info("peername")
        ssl_object = transport.get_extra_info("ssl_object")
        if not peer or ssl_object is None:
            return None
        key = (str(peer[0]), int(peer[1]))
        try:
            cert = ssl_object.getpeercert()
        except ValueError:  # handshake not complete
            cert = None
        user = user_from_subject(cert.get("subject")) if cert else None
        with self._lock:
            if user is None:
                self._by_peer.pop(key, None)
            else:
                self._by_peer[key] = user
        return key

    def forget(self, key: tuple[str, int] | None) -> None:
        if key is None:
            return
        with self._lock:
            self._by_peer.pop(key, None)

    def lookup(self, client: Any) -> UserInfo | None:
        if not client:
            return None
        with self._lock:
            return self._by_peer.get((str(client[0]), int(client[1])))

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_peer)


class TokenFile:
    """Static bearer tokens: ``token,user,uid[,"group1,group2"]`` per line (kube-apiserver's format)."""

    def __init__(self, users: dict[str, UserInfo]) -> None:
        self._users = users

    @classmethod
    def load(cls, path: Path | str) -> TokenFile:
        users: dict[str, UserInfo] = {}
        with open(path, newline="") as f:
            for lineno, row in enumerate(csv.reader(f), start=1):
                if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                    continue
                if len(row) < 3:
                    raise ValueError(f"{path}:{lineno}: expected token,user,uid[,groups]")
                token, name, uid = (c.strip() for c in row[:3])
                groups = tuple(g.strip() for g in row[3].split(",") if g.strip()) if len(row) > 3 else ()
                users[token] = UserInfo(name, uid, (*groups, "system:authenticated"))
        return cls(users)

    def authenticate(self, token: str) -> UserInfo | None:
        for known, user in self._users.items():
            # constant-time compare: tokens are secrets
            if hmac.compare_digest(known.encode(), token.encode()):
                return user
        return None


class BearerTokenAuthenticator(Protocol):
    def authenticate(self, token: str) -> UserInfo | None: ...


class Authenticator:
    def __init__(
        self,
        tokens: TokenFile | None,
        peers: PeerIdentities | None,
        anonymous: bool = False,
        service_account_tokens: BearerTokenAuthenticator | None = None,
    ) -> None:
        self.tokens = tokens
        self.peers = peers
        self.anonymous = anonymous
        # ServiceAccount JWTs (``satokens.TokenVerifier``); set by the app when it has keys.
        self.service_account_tokens = service_account_tokens

    def authenticate(self, authorization: str | None, client: Any) -> UserInfo | None:
        """The user, or None when the request carries no valid credentials."""
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip() and self.tokens is not None:
                user = self.tokens.authenticate(value.strip())
                if user is not None:
                    return user
            if scheme.lower() == "bearer" and value.strip() and self.service_account_tokens is not None:
                user = self.service_account_tokens.authenticate(value.strip())
                if user is not None:
                    return user
            if scheme.lower() == "bearer":
                # A bad token is a failed login even if the connection has a certificate? Kubernetes
                # tries every authenticator and succeeds if any does; do the same.
                pass
        if self.peers is not None:
            user = self.peers.lookup(client)
            if user is not None:
                return user
        if self.anonymous:
            return ANONYMOUS
        return None
