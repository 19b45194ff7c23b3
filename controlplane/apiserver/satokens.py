"""ServiceAccount tokens: bound JWTs as kube-apiserver issues and checks them.

Role: ``TokenSigner`` signs the claims ``token_claims`` builds (RS256 with the cluster's
service-account key, ``pki/sa.key``); ``TokenVerifier`` turns a bearer token back into a
``UserInfo`` — signature, issuer, audience, expiry, and then the objects the token is bound to:
the ServiceAccount, and the Pod, Secret or Node of the binding must still exist with the uid the
token names (Kubernetes: ``pkg/serviceaccount/claims.go`` ``Validate``, ``jwt.go``). ``jwks`` and
``openid_configuration`` are the documents of ``/openid/v1/jwks`` and
``/.well-known/openid-configuration`` (``pkg/serviceaccount/openidmetadata.go``).

Claims, as Kubernetes writes them::

    {"aud": [...], "exp": ..., "iat": ..., "nbf": ..., "iss": "https://kubernetes.default.svc.cluster.local",
     "jti": "<uuid>", "sub": "system:serviceaccount:<ns>:<name>",
     "kubernetes.io": {"namespace": ..., "serviceaccount": {"name", "uid"},
                       "pod": {"name", "uid"}, "node": {"name", "uid"}}}

Invariants: a token is accepted only while every object it is bound to exists with the same uid
and is not past its deletion time; expiry and not-before allow one minute of clock skew (go-jose's
default leeway, which kube-apiserver uses). Successful answers are cached for ``cache_ttl`` seconds
(kube-apiserver caches token authentication for 10 s), so a token of a deleted pod is refused at
most that long after the deletion.

Concurrency: ``TokenVerifier.authenticate`` may be called from any thread; its cache is a dict
guarded by a lock. The object lookups go through the ``getter`` callable given to it.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from controlplane.api.meta import parse_time
from controlplane.apiserver.auth import UserInfo

DEFAULT_ISSUER = "https://kubernetes.default.svc.cluster.local"
MIN_EXPIRATION = 600  # "may not specify a duration less than 10 minutes"
MAX_EXPIRATION = 1 << 32
DEFAULT_EXPIRATION = 3600
LEEWAY = 60.0
SA_USER_PREFIX = "system:serviceaccount:"
ALL_SA_GROUP = "system:serviceaccounts"
ALGORITHM = "RS256"

#: (resource plural, namespace, name) -> the object, or None when it does not exist.
Getter = Callable[[str, str, str], dict[str, Any] | None]


class TokenInvalid(Exception):
    """Why a token was refused (kube-apiserver logs this; the client only sees 401)."""


def sa_user_name(namespace: str, name: str) -> str:
    return f"{SA_USER_PREFIX}{namespace}:{name}"


def sa_groups(namespace: str) -> tuple[str, ...]:
    return (ALL_SA_GROUP, f"{ALL_SA_GROUP}:{namespace}", "system:authenticated")


def key_id(public_key: rsa.RSAPublicKey) -> str:
    """Kubernetes' key id: unpadded base64url of the SHA-256 of the DER (PKIX) public key."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def load_public_keys(pems: Sequence[bytes]) -> list[rsa.RSAPublicKey]:
    """Public keys from PEM files holding a public key, a private key, or several of either."""
    keys: list[rsa.RSAPublicKey] = []
    for pem in pems:
        for block in _pem_blocks(pem):
            if b"PRIVATE KEY" in block.split(b"\n", 1)[0]:
                priv = serialization.load_pem_private_key(block, password=None)
                pub: Any = priv.public_key()
            else:
                pub = serialization.load_pem_public_key(block)
            if not isinstance(pub, rsa.RSAPublicKey):
                raise ValueError("service-account keys must be RSA keys")
            keys.append(pub)
    return keys


def _pem_blocks(pem: bytes) -> list[bytes]:
    blocks, current = [], []
    for line in pem.splitlines(keepends=True):
        if line.startswith(b"-----BEGIN"):
            current = [line]
        elif current:
            current.append(line)
            if line.startswith(b"-----END"):
                blocks.append(b"".join(current))
                current = []
    return blocks


class TokenSigner:
    """Signs service-account tokens with one private key."""

    def __init__(self, key_pem: bytes, issuer: str = DEFAULT_ISSUER) -> None:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ValueError("the service-account signing key must be an RSA key")
        self._key = key
        self.issuer = issuer
        self.kid = key_id(key.public_key())

    @property
    def public_key(self) -> rsa.RSAPublicKey:
        return self._key.public_key()

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm=ALGORITHM, headers={"kid": self.kid})


def token_claims(
    *,
    issuer: str,
    audiences: Sequence[str],
    now: float,
    expiration_seconds: int,
    namespace: str,
    service_account: dict[str, Any],
    pod: dict[str, Any] | None = None,
    secret: dict[str, Any] | None = None,
    node: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The claims of a bound token (``pkg/serviceaccount/claims.go`` ``Claims``)."""

    def ref(obj: dict[str, Any]) -> dict[str, str]:
        md = obj.get("metadata") or {}
        return {"name": str(md.get("name", "")), "uid": str(md.get("uid", ""))}

    private: dict[str, Any] = {"namespace": namespace, "serviceaccount": ref(service_account)}
    if pod is not None:
        private["pod"] = ref(pod)
    if secret is not None:
        private["secret"] = ref(secret)
    if node is not None:
        private["node"] = ref(node)
    iat = int(now)
    return {
        "aud": list(audiences),
        "exp": iat + int(expiration_seconds),
        "iat": iat,
        "iss": issuer,
        "jti": str(uuid.uuid4()),
        "kubernetes.io": private,
        "nbf": iat,
        "sub": sa_user_name(namespace, ref(service_account)["name"]),
    }


def user_from_claims(claims: dict[str, Any]) -> UserInfo:
    """The user a verified token authenticates as (``pkg/serviceaccount/util.go`` ``UserInfo``)."""
    private = claims.get("kubernetes.io") or {}
    ns = str(private.get("namespace", ""))
    sa = private.get("serviceaccount") or {}
    extra: dict[str, str] = {}
    for kind in ("pod", "node"):
        ref = private.get(kind)
        if isinstance(ref, dict):
            extra[f"authentication.kubernetes.io/{kind}-name"] = str(ref.get("name", ""))
            extra[f"authentication.kubernetes.io/{kind}-uid"] = str(ref.get("uid", ""))
    if claims.get("jti"):
        extra["authentication.kubernetes.io/credential-id"] = f"JTI={claims['jti']}"
    return UserInfo(sa_user_name(ns, str(sa.get("name", ""))), str(sa.get("uid", "")), sa_groups(ns), extra)


class TokenVerifier:
    """Bearer token → ``UserInfo`` for tokens this cluster's issuer signed (None for any other)."""

    def __init__(
        self,
        public_keys: Sequence[rsa.RSAPublicKey],
        getter: Getter,
        *,
        issuer: str = DEFAULT_ISSUER,
        audiences: Sequence[str] = (),
        cache_ttl: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = {key_id(k): k for k in public_keys}
        self._getter = getter
        self.issuer = issuer
        self.audiences = tuple(audiences) or (issuer,)
        self.cache_ttl = cache_ttl
        self._clock = clock
        self._cache: dict[str, tuple[float, UserInfo]] = {}
        self._lock = threading.Lock()

    def authenticate(self, token: str) -> UserInfo | None:
        if token.count(".") != 2:
            return None  # not a JWT: another authenticator's token
        now = self._clock()
        with self._lock:
            hit = self._cache.get(token)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            claims = self.verify(token)
        except TokenInvalid:
            return None
        user = user_from_claims(claims)
        if self.cache_ttl > 0:
            with self._lock:
                if len(self._cache) > 4096:
                    self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
                self._cache[token] = (min(now + self.cache_ttl, float(claims["exp"]) + LEEWAY), user)
        return user

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims, or ``TokenInvalid`` saying why it is refused."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise TokenInvalid(f"malformed token: {exc}") from None
        if unverified.get("iss") != self.issuer:
            raise TokenInvalid("not issued by this cluster")
        keys = [self._keys[header["kid"]]] if header.get("kid") in self._keys else list(self._keys.values())
        claims: dict[str, Any] | None = None
        for key in keys:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[ALGORITHM],
                    audience=list(self.audiences),
                    issuer=self.issuer,
                    # expiry and not-before are checked below against this verifier's clock
                    options={
                        "require": ["exp", "iat", "sub"],
                        "verify_exp": False,
                        "verify_nbf": False,
                        "verify_iat": False,
                    },
                )
                break
            except jwt.InvalidAudienceError:
                raise TokenInvalid("token audiences do not match the API server's") from None
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise TokenInvalid(str(exc)) from None
        if claims is None:
            raise TokenInvalid("invalid signature")
        now = self._clock()
        try:
            exp, nbf = float(claims["exp"]), float(claims.get("nbf", claims["iat"]))
        except (TypeError, ValueError):
            raise TokenInvalid("malformed exp/nbf claims") from None
        if now > exp + LEEWAY:
            raise TokenInvalid("service account token has expired")
        if now < nbf - LEEWAY:
            raise TokenInvalid("service account token is not valid yet")
        self.check_bindings(claims)
        return claims

    def check_bindings(self, claims: dict[str, Any]) -> None:
        """The ServiceAccount and the bound object still exist with the uids of the token."""
        private = claims.get("kubernetes.io")
        if not isinstance(private, dict) or not isinstance(private.get("serviceaccount"), dict):
            raise TokenInvalid("token has no kubernetes.io claims")
        ns = str(private.get("namespace", ""))
        now = self._clock()
        for resource, kind, namespaced in (
            ("serviceaccounts", "serviceaccount", True),
            ("pods", "pod", True),
            ("secrets", "secret", True),
            ("nodes", "node", False),
        ):
            ref = private.get(kind)
            if ref is None:
                continue
            name, uid = str(ref.get("name", "")), str(ref.get("uid", ""))
            obj = self._getter(resource, ns if namespaced else "", name)
            where = f"{ns}/{name}" if namespaced else name
            if obj is None:
                raise TokenInvalid(f"{kind} {where} has been deleted")
            md = obj.get("metadata") or {}
            if md.get("uid") != uid:
                raise TokenInvalid(f"{kind} UID ({md.get('uid')}) does not match claim ({uid})")
            deleting = md.get("deletionTimestamp")
            if deleting and parse_time(str(deleting)).timestamp() < now:
                raise TokenInvalid(f"{kind} {where} is terminating")


def jwks(keys: Sequence[rsa.RSAPublicKey]) -> dict[str, Any]:
    """The JSON Web Key Set of the verification keys (``/openid/v1/jwks``)."""
    out = []
    for k in keys:
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(k, as_dict=True)
        out.append({"use": "sig", "kty": "RSA", "kid": key_id(k), "alg": ALGORITHM, "n": jwk["n"], "e": jwk["e"]})
    return {"keys": out}


def openid_configuration(issuer: str, jwks_uri: str) -> dict[str, Any]:
    """The OIDC discovery document (``/.well-known/openid-configuration``)."""
    return {
        "issuer": issuer,
        "jwks_uri": jwks_uri,
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ALGORITHM],
    }
