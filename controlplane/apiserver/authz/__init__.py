"""Authorization: ``--authorization-mode`` (Node, RBAC, AlwaysAllow), and what goes with it.

Role: kube-apiserver's authorizer union and its RBAC machinery, split by concern:

- ``rbac.py``        the RBAC authorizer and the policy index (bindings by subject);
- ``node.py``        the Node authorizer and its pod graph;
- ``bootstrap.py``   Kubernetes' bootstrap roles/bindings and their reconciliation at start;
- ``feed.py``        keeps the index and the graph current from the server's watch cache;
- ``escalation.py``  RBAC privilege-escalation prevention (``escalate``/``bind`` verbs);
- ``noderestriction.py`` the NodeRestriction admission plugin;
- ``impersonation.py``  ``Impersonate-*`` headers, checked with the ``impersonate`` verb;
- ``reviews.py``     SubjectAccessReview & co., SelfSubjectReview, TokenReview.

``Chain`` asks each authorizer in order; the first that allows wins; otherwise the request is
refused with every authorizer's reason joined by ", " (the union authorizer's behaviour).
``forbidden`` words the 403 exactly as ``responsewriters/errors.go`` and ``apierrors.NewForbidden``:
``pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace
"default"``.
"""

from __future__ import annotations

from collections.abc import Sequence

from controlplane.api import errors
from controlplane.apiserver.auth import Authorizer, RequestAttributes, UserInfo

MODES = ("Node", "RBAC", "AlwaysAllow", "AlwaysDeny")
DEFAULT_MODE = "Node,RBAC"


class PrivilegedGroups:
    """``system:masters`` may do anything, whatever RBAC holds (kube-apiserver puts this first)."""

    def authorize(self, user: UserInfo, attrs: RequestAttributes) -> tuple[bool, str]:
        return "system:masters" in user.groups, ""


class AlwaysAllow:
    def authorize(self, user: UserInfo, attrs: RequestAttributes) -> tuple[bool, str]:
        return True, ""


class AlwaysDeny:
    def authorize(self, user: UserInfo, attrs: RequestAttributes) -> tuple[bool, str]:
        return False, "Everything is forbidden."


class Chain:
    """The union authorizer: first allow wins; reasons of refusals are joined."""

    def __init__(self, authorizers: Sequence[Authorizer]) -> None:
        self.authorizers = tuple(authorizers)

    def authorize(self, user: UserInfo, attrs: RequestAttributes) -> tuple[bool, str]:
        reasons: list[str] = []
        for a in self.authorizers:
            ok, reason = a.authorize(user, attrs)
            if ok:
                return True, reason
            if reason:
                reasons.append(reason)
        return False, ", ".join(reasons)


def parse_modes(value: str) -> list[str]:
    """``"Node,RBAC"`` → ``["Node", "RBAC"]``; ValueError names an unknown or repeated mode."""
    modes = [m.strip() for m in value.split(",") if m.strip()]
    if not modes:
        raise ValueError("at least one authorization mode must be given")
    for m in modes:
        if m not in MODES:
            raise ValueError(f"authorization mode {m!r} is not supported: choose from {', '.join(MODES)}")
    if len(set(modes)) != len(modes):
        raise ValueError(f"authorization modes must not repeat: {value!r}")
    return modes


def forbidden_message(user: UserInfo, attrs: RequestAttributes) -> str:
    """``forbiddenMessage`` of kube-apiserver's responsewriters."""
    if not attrs.resource_request:
        return f'User "{user.name}" cannot {attrs.verb} path "{attrs.path}"'
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    if attrs.namespace:
        return (
            f'User "{user.name}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.group}" '
            f'in the namespace "{attrs.namespace}"'
        )
    return (
        f'User "{user.name}" cannot {attrs.verb} resource "{resource}" in API group "{attrs.group}" '
        "at the cluster scope"
    )


def forbidden(user: UserInfo, attrs: RequestAttributes, reason: str) -> errors.Forbidden:
    """The 403 ``Status`` (``apierrors.NewForbidden(groupResource, name, err)``)."""
    err = forbidden_message(user, attrs)
    if reason:
        err = f"{err}: {reason}"
    qualified = attrs.resource if not attrs.group else f"{attrs.resource}.{attrs.group}"
    if not attrs.resource_request:
        qualified = ""
    if attrs.name:
        msg = f'{qualified} "{attrs.name}" is forbidden: {err}'
    else:
        msg = f"{qualified} is forbidden: {err}" if qualified else f"forbidden: {err}"
    return errors.Forbidden(msg, kind=attrs.resource, name=attrs.name, group=attrs.group)
