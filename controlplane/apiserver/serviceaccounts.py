"""The API server's ServiceAccount endpoints: TokenRequest and service-account issuer discovery.

Role:
- ``POST /api/v1/namespaces/NS/serviceaccounts/NAME/token`` (``kubectl create token``): validate
  the ``authentication.k8s.io/v1`` TokenRequest, look up the ServiceAccount and the object the
  token is to be bound to (Pod, Secret or Node), and answer with the request and a signed token in
  its status (Kubernetes: ``pkg/registry/core/serviceaccount/storage/token.go``).
- ``GET /.well-known/openid-configuration`` and ``GET /openid/v1/jwks``: served without
  authentication, so anything that trusts this cluster's tokens can find the keys.
- ``verifier``: the ``satokens.TokenVerifier`` the authenticator asks about bearer tokens.

Invariants: nothing here writes to the store; a TokenRequest that fails validation or names a
missing object changes nothing and is answered with Kubernetes' status and wording. Without a
signing key (an app built without PKI) the token subresource is not served (404) and tokens are
never accepted.

Concurrency: request handlers run on the event loop; store reads go through the server's pool
(``run``); the verifier's lookups are synchronous store reads (once per token per cache TTL).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson

from controlplane.api import errors, registry
from controlplane.api.registry import Resource
from controlplane.apiserver import satokens
from controlplane.apiserver.httpio import Request, Send, decode_body, send_json, send_response
from controlplane.apiserver.options import ServerOptions
from controlplane.storage.interface import Store

log = logging.getLogger(__name__)

OPENID_CONFIG_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/openid/v1/jwks"
_JWKS_CONTENT_TYPE = "application/jwk-set+json"
_BINDABLE: dict[str, Resource] = {"Pod": registry.PODS, "Secret": registry.SECRETS, "Node": registry.NODES}
_NOT_FOUND = "the server could not find the requested resource"

Obj = dict[str, Any]


class ServiceAccounts:
    """Token issuing and verification for one API server (built from its ``ServerOptions``)."""

    def __init__(self, store: Store, options: ServerOptions, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.options = options
        self.clock = clock
        self.issuer = options.service_account_issuer or satokens.DEFAULT_ISSUER
        self.audiences = tuple(options.api_audiences) or (self.issuer,)
        self.signer: satokens.TokenSigner | None = None
        keys = []
        if options.service_account_signing_key_file is not None:
            self.signer = satokens.TokenSigner(options.service_account_signing_key_file.read_bytes(), self.issuer)
            keys.append(self.signer.public_key)
        for path in options.service_account_key_files:
            keys += satokens.load_public_keys([path.read_bytes()])
        by_id = {satokens.key_id(k): k for k in keys}  # the signing key's public half may be listed too
        self.public_keys = list(by_id.values())
        self.verifier: satokens.TokenVerifier | None = (
            satokens.TokenVerifier(
                self.public_keys, self.lookup, issuer=self.issuer, audiences=self.audiences, clock=clock
            )
            if self.public_keys
            else None
        )

    # -- store reads -------------------------------------------------------------------------

    def lookup(self, resource: str, namespace: str, name: str) -> Obj | None:
        res = registry.lookup("", "v1", resource)
        if res is None:
            return None
        kv = self.store.get(res.storage_key(name, namespace if res.namespaced else None))
        if kv is None:
            return None
        obj: Obj = orjson.loads(kv.value)
        return obj

    # -- discovery ---------------------------------------------------------------------------

    def jwks_uri(self) -> str:
        if self.options.service_account_jwks_uri:
            return self.options.service_account_jwks_uri
        return f"https://{self.options.advertise_address}:{self.options.secure_port}{JWKS_PATH}"

    async def serve_discovery(self, req: Request, path: str, send: Send) -> bool:
        """Answer the two public issuer-discovery paths; False for any other path."""
        if path not in (OPENID_CONFIG_PATH, JWKS_PATH):
            return False
        if req.method not in ("GET", "HEAD"):
            raise errors.MethodNotAllowed(
                f"the server does not allow this method on the requested resource ({req.method})"
            )
        if not self.public_keys:
            raise errors.NotFound(_NOT_FOUND)
        if path == OPENID_CONFIG_PATH:
            await send_json(send, 200, satokens.openid_configuration(self.issuer, self.jwks_uri()))
        else:
            await send_response(send, 200, orjson.dumps(satokens.jwks(self.public_keys)), _JWKS_CONTENT_TYPE)
        return True

    # -- TokenRequest --------------------------------------------------------------------------

    async def token_request(self, server: Any, req: Request, namespace: str, name: str, send: Send) -> None:
        """``POST …/serviceaccounts/NAME/token``; ``server`` is the ``RequestScope`` (its store pool)."""
        if self.signer is None:
            raise errors.NotFound(_NOT_FOUND)
        raw = await req.body(self.options.max_body_bytes)
        body = decode_body(raw, req.content_type) if raw else {}
        dry = bool(req.query.get("dryRun"))
        answer = await server.run(self.create_token, namespace, name, body, dry)
        await send_json(send, 201, answer)

    def create_token(self, namespace: str, name: str, body: Any, dry_run: bool = False) -> Obj:
        """The TokenRequest answered (status.token, status.expirationTimestamp). Runs on a pool thread."""
        assert self.signer is not None
        tr = _check_token_request(body, namespace, name)
        spec = tr["spec"]
        audiences = spec.get("audiences") or list(self.audiences)
        spec["audiences"] = audiences
        exp = spec.get("expirationSeconds")
        if exp is None:
            exp = satokens.DEFAULT_EXPIRATION
        if isinstance(exp, bool) or not isinstance(exp, int):
            raise errors.BadRequest(f"spec.expirationSeconds must be an integer number of seconds, got {exp!r}")
        spec["expirationSeconds"] = exp
        causes = []
        if exp < satokens.MIN_EXPIRATION:
            causes.append(
                errors.Cause(
                    "spec.expirationSeconds",
                    f"Invalid value: {exp}: may not specify a duration less than 10 minutes",
                    "FieldValueInvalid",
                )
            )
        elif exp > satokens.MAX_EXPIRATION:
            causes.append(
                errors.Cause(
                    "spec.expirationSeconds",
                    f"Invalid value: {exp}: may not specify a duration larger than 2^32 seconds",
                    "FieldValueInvalid",
                )
            )
        if causes:
            summary = ", ".join(f"{c.field}: {c.message}" for c in causes)
            raise errors.Invalid(
                f'TokenRequest.authentication.k8s.io "{name}" is invalid: {summary}',
                kind="TokenRequest",
                group="authentication.k8s.io",
                name=name,
                causes=causes,
            )
        sa = self.lookup("serviceaccounts", namespace, name)
        if sa is None:
            raise errors.NotFound(f'serviceaccounts "{name}" not found', kind="serviceaccounts", name=name)
        bound = self._bound_objects(namespace, name, spec.get("boundObjectRef"))
        now = self.clock()
        claims = satokens.token_claims(
            issuer=self.issuer,
            audiences=audiences,
            now=now,
            expiration_seconds=int(exp),
            namespace=namespace,
            service_account=sa,
            **bound,
        )
        token = "" if dry_run else self.signer.sign(claims)
        expires = datetime.fromtimestamp(claims["exp"], UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": namespace, "creationTimestamp": None},
            "spec": spec,
            "status": {"token": token, "expirationTimestamp": expires},
        }

    def _bound_objects(self, namespace: str, sa_name: str, ref: Any) -> dict[str, Obj]:
        if not ref:
            return {}
        if not isinstance(ref, dict):
            raise errors.BadRequest("spec.boundObjectRef must be an object")
        kind, api_version = str(ref.get("kind", "")), str(ref.get("apiVersion") or "v1")
        res = _BINDABLE.get(kind)
        if res is None or api_version != "v1":
            group = api_version.rpartition("/")[0]
            gvk = f"{group}/{api_version.rpartition('/')[2]}, Kind={kind}"
            raise errors.BadRequest(f"cannot bind token to object of type {gvk}")
        obj_name = str(ref.get("name", ""))
        obj = self.lookup(res.plural, namespace, obj_name)
        if obj is None:
            raise errors.NotFound(f'{res.plural} "{obj_name}" not found', kind=res.plural, name=obj_name)
        uid = str((obj.get("metadata") or {}).get("uid", ""))
        if ref.get("uid") and ref["uid"] != uid:
            raise errors.Conflict(
                f'Operation cannot be fulfilled on {kind} "{obj_name}": the UID in the bound object reference '
                f"({ref['uid']}) does not match the UID in record. The object might have been deleted and then "
                "recreated",
                kind=kind,
                name=obj_name,
            )
        out: dict[str, Obj] = {}
        if kind == "Pod":
            pod_sa = (obj.get("spec") or {}).get("serviceAccountName") or ""
            if pod_sa != sa_name:
                raise errors.BadRequest(
                    f'cannot bind token for serviceaccount "{sa_name}" to pod running with different '
                    "serviceaccount name."
                )
            out["pod"] = obj
            node_name = (obj.get("spec") or {}).get("nodeName")
            node = self.lookup("nodes", "", node_name) if node_name else None
            if node is not None:
                out["node"] = node  # the node the pod runs on (ServiceAccountTokenPodNodeInfo)
        elif kind == "Secret":
            out["secret"] = obj
        else:
            out["node"] = obj
        return out


def _check_token_request(body: Any, namespace: str, name: str) -> Obj:
    if not isinstance(body, dict):
        raise errors.BadRequest("the body of the request must be a TokenRequest object")
    kind = body.get("kind")
    if kind not in (None, "", "TokenRequest"):
        raise errors.BadRequest(f"the body of the request was of kind {kind}, expected TokenRequest")
    md = body.get("metadata") or {}
    if md.get("namespace") and md["namespace"] != namespace:
        raise errors.BadRequest("the namespace of the provided object does not match the namespace sent on the request")
    spec = body.get("spec")
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise errors.BadRequest("spec must be an object")
    spec = dict(spec)
    auds = spec.get("audiences")
    if auds is not None and (not isinstance(auds, list) or not all(isinstance(a, str) for a in auds)):
        raise errors.BadRequest("spec.audiences must be a list of strings")
    return {"metadata": {"name": name, "namespace": namespace}, "spec": spec}
