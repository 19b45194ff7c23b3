"""The review kinds: answered by the server, never stored.

Role: ``authorization.k8s.io/v1`` SelfSubjectAccessReview, SubjectAccessReview,
LocalSubjectAccessReview (``kubectl auth can-i``), SelfSubjectRulesReview (``kubectl auth can-i
--list``), and ``authentication.k8s.io/v1`` SelfSubjectReview (``kubectl auth whoami``) and
TokenReview. Each takes the posted object and returns it with ``status`` filled (201), as
kube-apiserver's ``pkg/registry/authorization/*`` and ``pkg/registry/authentication/*`` do, with
their validation messages for a malformed spec.

Pure apart from asking the authorizer, the policy index and the authenticator; thread-safe.
"""

from __future__ import annotations

from typing import Any

from controlplane.api import errors
from controlplane.api.errors import Cause
from controlplane.apiserver.auth import Authenticator, Authorizer, RequestAttributes, UserInfo
from controlplane.apiserver.authz.rbac import PolicyIndex

Obj = dict[str, Any]


def user_info(user: UserInfo) -> Obj:
    out: Obj = {"username": user.name, "groups": list(user.groups)}
    if user.uid:
        out["uid"] = user.uid
    if user.extra:
        out["extra"] = {k: v.split(",") for k, v in user.extra.items()}
    return out


def _attributes(kind: str, spec: Obj) -> RequestAttributes:
    ra, nra = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if isinstance(ra, dict) and isinstance(nra, dict):
        raise errors.invalid(
            kind,
            "",
            [
                Cause(
                    "spec.nonResourceAttributes",
                    'Invalid value: "null": cannot be specified in combination with resourceAttributes',
                )
            ],
        )
    if isinstance(ra, dict):
        return RequestAttributes(
            verb=str(ra.get("verb") or ""),
            group=str(ra.get("group") or ""),
            resource=str(ra.get("resource") or ""),
            subresource=str(ra.get("subresource") or ""),
            namespace=str(ra.get("namespace") or ""),
            name=str(ra.get("name") or ""),
        )
    if isinstance(nra, dict):
        return RequestAttributes(
            verb=str(nra.get("verb") or ""), path=str(nra.get("path") or ""), resource_request=False
        )
    raise errors.invalid(
        kind,
        "",
        [
            Cause(
                "spec.resourceAttributes",
                'Invalid value: "null": exactly one of nonResourceAttributes or resourceAttributes must be specified',
            )
        ],
    )


def _answer(body: Obj, kind: str, api_version: str, status: Obj) -> Obj:
    out = dict(body)
    out["kind"], out["apiVersion"] = kind, api_version
    md = out.get("metadata") if isinstance(out.get("metadata"), dict) else {}
    out["metadata"] = {**(md or {}), "creationTimestamp": None}
    out["status"] = status
    return out


def _access_status(authorizer: Authorizer, user: UserInfo, attrs: RequestAttributes) -> Obj:
    allowed, reason = authorizer.authorize(user, attrs)
    status: Obj = {"allowed": allowed}
    if reason:
        status["reason"] = reason
    return status


AUTHZ = "authorization.k8s.io/v1"
AUTHN = "authentication.k8s.io/v1"


def review(
    plural: str,
    body: Any,
    user: UserInfo,
    namespace: str,
    authorizer: Authorizer,
    index: PolicyIndex | None,
    authn: Authenticator,
) -> Obj:
    """Answer one posted review object (``plural`` is its resource)."""
    if not isinstance(body, dict):
        raise errors.BadRequest("the request body must be a JSON object")
    spec = body.get("spec") if isinstance(body.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    if plural == "selfsubjectaccessreviews":
        attrs = _attributes("SelfSubjectAccessReview", spec)
        return _answer(body, "SelfSubjectAccessReview", AUTHZ, _access_status(authorizer, user, attrs))
    if plural in ("subjectaccessreviews", "localsubjectaccessreviews"):
        kind = "SubjectAccessReview" if plural == "subjectaccessreviews" else "LocalSubjectAccessReview"
        if not spec.get("user") and not spec.get("groups"):
            raise errors.invalid(
                kind, "", [Cause("spec.user", 'Invalid value: "": at least one of user or group must be specified')]
            )
        attrs = _attributes(kind, spec)
        if plural == "localsubjectaccessreviews":
            ra_ns = (spec.get("resourceAttributes") or {}).get("namespace") if attrs.resource_request else None
            if not attrs.resource_request or (ra_ns and ra_ns != namespace):
                raise errors.invalid(
                    kind,
                    "",
                    [
                        Cause(
                            "spec.resourceAttributes.namespace",
                            f'Invalid value: "{ra_ns or ""}": must match metadata.namespace',
                        )
                    ],
                )
            attrs = RequestAttributes(**{**attrs.__dict__, "namespace": namespace})
            body = {**body, "metadata": {**(body.get("metadata") or {}), "namespace": namespace}}
        extra = spec.get("extra") if isinstance(spec.get("extra"), dict) else {}
        subject = UserInfo(
            str(spec.get("user") or ""),
            str(spec.get("uid") or ""),
            tuple(str(g) for g in spec.get("groups") or []),
            {str(k): ",".join(map(str, v)) for k, v in (extra or {}).items() if isinstance(v, list)},
        )
        return _answer(body, kind, AUTHZ, _access_status(authorizer, subject, attrs))
    if plural == "selfsubjectrulesreviews":
        ns = str(spec.get("namespace") or "")
        rules = index.rules_for(user, ns) if index is not None else []
        resource_rules: list[Obj] = []
        non_resource: list[Obj] = []
        for r in rules:
            if r.get("nonResourceURLs"):
                non_resource.append({"verbs": r.get("verbs") or [], "nonResourceURLs": r["nonResourceURLs"]})
            else:
                rr: Obj = {
                    "verbs": r.get("verbs") or [],
                    "apiGroups": r.get("apiGroups") or [],
                    "resources": r.get("resources") or [],
                }
                if r.get("resourceNames"):
                    rr["resourceNames"] = r["resourceNames"]
                resource_rules.append(rr)
        status: Obj = {
            "resourceRules": resource_rules,
            "nonResourceRules": non_resource,
            # RBAC lists everything it would allow; other modes (Node, AlwaysAllow) cannot list theirs.
            "incomplete": index is None or any(g == "system:nodes" for g in user.groups),
        }
        return _answer(body, "SelfSubjectRulesReview", AUTHZ, status)
    if plural == "selfsubjectreviews":
        return _answer(body, "SelfSubjectReview", AUTHN, {"userInfo": user_info(user)})
    if plural == "tokenreviews":
        token = spec.get("token")
        if not isinstance(token, str) or not token:
            raise errors.invalid(
                "TokenReview",
                "",
                [Cause("spec.token", "Required value: token must not be empty", "FieldValueRequired")],
            )
        # No client address: only the token can authenticate (never a TLS peer); anonymous is no login.
        found = authn.authenticate(f"Bearer {token}", None)
        if found is None or "system:unauthenticated" in found.groups:
            return _answer(body, "TokenReview", AUTHN, {"user": {}, "error": "invalid bearer token"})
        st: Obj = {"authenticated": True, "user": user_info(found)}
        if spec.get("audiences"):
            st["audiences"] = spec["audiences"]
        return _answer(body, "TokenReview", AUTHN, st)
    raise errors.NotFound("the server could not find the requested resource")
