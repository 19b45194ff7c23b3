"""ServiceAccount JWTs: issue, verify, expiry, bindings, cache, discovery documents (pure, no root)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from controlplane.apiserver import satokens

ISSUER = satokens.DEFAULT_ISSUER


@pytest.fixture(scope="module")
def key_pem() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def objects() -> dict[tuple[str, str, str], dict[str, Any]]:
    return {
        ("serviceaccounts", "shop", "builder"): {"metadata": {"name": "builder", "uid": "sa-uid"}},
        ("pods", "shop", "web"): {"metadata": {"name": "web", "uid": "pod-uid"}, "spec": {"nodeName": "n1"}},
        ("nodes", "", "n1"): {"metadata": {"name": "n1", "uid": "node-uid"}},
    }


def make(
    key_pem: bytes, clock: Clock, objs: dict[tuple[str, str, str], dict[str, Any]], **kw: Any
) -> tuple[satokens.TokenSigner, satokens.TokenVerifier]:
    signer = satokens.TokenSigner(key_pem, ISSUER)
    verifier = satokens.TokenVerifier(
        [signer.public_key], lambda r, ns, n: objs.get((r, ns, n)), issuer=ISSUER, clock=clock, **kw
    )
    return signer, verifier


def pod_token(signer: satokens.TokenSigner, clock: Clock, objs: dict[Any, Any], exp: int = 3600, **kw: Any) -> str:
    claims = satokens.token_claims(
        issuer=ISSUER,
        audiences=kw.pop("audiences", [ISSUER]),
        now=clock(),
        expiration_seconds=exp,
        namespace="shop",
        service_account=objs[("serviceaccounts", "shop", "builder")],
        pod=objs[("pods", "shop", "web")],
        node=objs[("nodes", "", "n1")],
    )
    return signer.sign(claims)


def test_token_claims_and_user_are_kubernetes_shaped(key_pem: bytes) -> None:
    clock, objs = Clock(), objects()
    signer, verifier = make(key_pem, clock, objs)
    token = pod_token(signer, clock, objs)
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header["kid"] == signer.kid
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["iss"] == ISSUER and claims["aud"] == [ISSUER]
    assert claims["sub"] == "system:serviceaccount:shop:builder"
    assert claims["exp"] - claims["iat"] == 3600 and claims["nbf"] == claims["iat"] == int(clock())
    assert claims["kubernetes.io"] == {
        "namespace": "shop",
        "serviceaccount": {"name": "builder", "uid": "sa-uid"},
        "pod": {"name": "web", "uid": "pod-uid"},
        "node": {"name": "n1", "uid": "node-uid"},
    }
    user = verifier.authenticate(token)
    assert user is not None
    assert user.name == "system:serviceaccount:shop:builder" and user.uid == "sa-uid"
    assert user.groups == ("system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated")
    assert user.extra["authentication.kubernetes.io/pod-name"] == "web"
    assert user.extra["authentication.kubernetes.io/pod-uid"] == "pod-uid"
    assert user.extra["authentication.kubernetes.io/node-name"] == "n1"
    assert user.extra["authentication.kubernetes.io/credential-id"] == f"JTI={claims['jti']}"


def test_expired_token_is_refused_after_the_leeway(key_pem: bytes) -> None:
    clock, objs = Clock(), objects()
    signer, verifier = make(key_pem, clock, objs, cache_ttl=0)
    token = pod_token(signer, clock, objs, exp=600)
    clock.t += 600 + satokens.LEEWAY - 1
    assert verifier.authenticate(token) is not None
    clock.t += 2
    assert verifier.authenticate(token) is None
    with pytest.raises(satokens.TokenInvalid, match="expired"):
        verifier.verify(token)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda o: o.pop(("pods", "shop", "web")), "pod shop/web has been deleted"),
        (lambda o: o[("pods", "shop", "web")]["metadata"].update(uid="other"), "pod UID"),
        (lambda o: o.pop(("serviceaccounts", "shop", "builder")), "serviceaccount shop/builder has been deleted"),
        (lambda o: o[("serviceaccounts", "shop", "builder")]["metadata"].update(uid="x"), "serviceaccount UID"),
        (lambda o: o.pop(("nodes", "", "n1")), "node n1 has been deleted"),
        (
            lambda o: o[("pods", "shop", "web")]["metadata"].update(deletionTimestamp="2020-01-01T00:00:00Z"),
            "terminating",
        ),
    ],
)
def test_bound_objects_must_still_exist(key_pem: bytes, change: Any, reason: str) -> None:
    clock, objs = Clock(), objects()
    signer, verifier = make(key_pem, clock, objs, cache_ttl=0)
    token = pod_token(signer, clock, objs)
    assert verifier.authenticate(token) is not None
    change(objs)
    assert verifier.authenticate(token) is None
    with pytest.raises(satokens.TokenInvalid, match=reason):
        verifier.verify(token)


def test_pod_in_its_grace_period_keeps_its_token(key_pem: bytes) -> None:
    clock, objs = Clock(), objects()
    signer, verifier = make(key_pem, clock, objs, cache_ttl=0)
    token = pod_token(signer, clock, objs)
    later = datetime.fromtimestamp(clock() + 30, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    objs[("pods", "shop", "web")]["metadata"]["deletionTimestamp"] = later
    assert verifier.authenticate(token) is not None


def test_foreign_and_tampered_tokens_are_not_ours(key_pem: bytes) -> None:
    clock, objs = Clock(), objects()
    signer, verifier = make(key_pem, clock, objs, cache_ttl=0)
    assert verifier.authenticate("not-a-jwt") is None
    assert verifier.authenticate("a.b.c") is None
    other = satokens.TokenSigner(key_pem, "https://elsewhere.example")
    claims = satokens.token_claims(
        issuer="https://elsewhere.example",
        audiences=[ISSUER],
        now=clock(),
        expiration_seconds=3600,
        namespace="shop",
        service_account=objs[("serviceaccounts", "shop", "builder")],
    )
    assert verifier.authenticate(other.sign(claims)) is None
    token = pod_token(signer, clock, objs)
    head, body, sig = token.split(".")
    assert verifier.authenticate(f"{head}.{body}.{sig[:-4]}AAAA") is None
    assert verifier.authenticate(pod_token(signer, clock, objs, audiences=["vault"])) is None
    mine = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = mine.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    assert verifier.authenticate(pod_token(satokens.TokenSigner(pem, ISSUER), clock, objs)) is None


def test_success_is_cached_for_the_ttl_only(key_pem: bytes) -> None:
    clock, objs = Clock(), objects()
    signer, verifier = make(key_pem, clock, objs, cache_ttl=10)
    token = pod_token(signer, clock, objs)
    assert verifier.authenticate(token) is not None
    objs.pop(("pods", "shop", "web"))
    clock.t += 5
    assert verifier.authenticate(token) is not None  # kube-apiserver caches successes for 10 s too
    clock.t += 6
    assert verifier.authenticate(token) is None


def test_jwks_and_openid_configuration(key_pem: bytes) -> None:
    signer = satokens.TokenSigner(key_pem, ISSUER)
    doc = satokens.jwks([signer.public_key])
    [k] = doc["keys"]
    assert k["kid"] == signer.kid and k["kty"] == "RSA" and k["alg"] == "RS256" and k["use"] == "sig"
    pub = jwt.algorithms.RSAAlgorithm.from_jwk(k)
    clock, objs = Clock(), objects()
    token = pod_token(signer, clock, objs)
    assert jwt.decode(
        token,
        pub,
        algorithms=["RS256"],
        audience=ISSUER,
        options={"verify_exp": False, "verify_nbf": False, "verify_iat": False},
    )["sub"]  # type: ignore[arg-type]
    cfg = satokens.openid_configuration(ISSUER, "https://192.168.56.10:6443/openid/v1/jwks")
    assert cfg == {
        "issuer": ISSUER,
        "jwks_uri": "https://192.168.56.10:6443/openid/v1/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }
    assert satokens.load_public_keys([key_pem])[0].public_numbers() == signer.public_key.public_numbers()
