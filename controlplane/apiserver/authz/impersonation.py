"""Impersonation: ``Impersonate-User``/``-Group``/``-Uid``/``-Extra-*`` headers
(kube-apiserver's ``staging/.../apiserver/pkg/endpoints/filters/impersonation.go``).

Role: a request carrying these headers runs as the named user, if the real user may ``impersonate``
each part: ``users`` (or ``serviceaccounts`` in the account's namespace for
``system:serviceaccount:<ns>:<name>``) and ``groups`` in the core group, ``uids`` and
``userextras/<key>`` in ``authentication.k8s.io``. A refusal is the usual 403 for that check
(``users "alice" is forbidden: User "bob" cannot impersonate resource "users" in API group "" at
the cluster scope``); groups or extras without a user are a 400.

The impersonated user gets ``system:authenticated`` (and, for a ServiceAccount,
``system:serviceaccounts`` and ``system:serviceaccounts:<ns>``) as Kubernetes adds them.

Pure function of the headers, the real user and the authorizer; thread-safe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from urllib.parse import unquote

from controlplane.api import errors
from controlplane.apiserver.auth import Authorizer, RequestAttributes, UserInfo
from controlplane.apiserver.authz import forbidden

SA_PREFIX = "system:serviceaccount:"
EXTRA_PREFIX = "impersonate-extra-"


def impersonate(
    headers: Sequence[tuple[bytes, bytes]] | Mapping[str, str], user: UserInfo, authorizer: Authorizer
) -> UserInfo | None:
    """The user to act as, or None when the request impersonates nobody."""
    pairs = (
        headers.items()
        if isinstance(headers, Mapping)
        else ((k.decode("latin-1"), v.decode("latin-1")) for k, v in headers)
    )
    name: str | None = None
    uid: str | None = None
    groups: list[str] = []
    extra: dict[str, list[str]] = {}
    for k, v in pairs:
        key = k.lower()
        if key == "impersonate-user":
            name = v
        elif key == "impersonate-group":
            groups.append(v)
        elif key == "impersonate-uid":
            uid = v
        elif key.startswith(EXTRA_PREFIX):
            extra.setdefault(unquote(key[len(EXTRA_PREFIX) :]), []).append(v)
    if name is None:
        if groups or uid is not None or extra:
            raise errors.BadRequest(
                "requested "
                + ", ".join([*(f"group {g!r}" for g in groups), *(f"extra {k!r}" for k in extra)] or ["uid"])
                + " without impersonating a user"
            )
        return None

    def check(attrs: RequestAttributes) -> None:
        ok, reason = authorizer.authorize(user, attrs)
        if not ok:
            raise forbidden(user, attrs, reason)

    if name.startswith(SA_PREFIX) and name.count(":") == 3:
        ns, _, sa = name[len(SA_PREFIX) :].partition(":")
        check(RequestAttributes(verb="impersonate", resource="serviceaccounts", namespace=ns, name=sa))
        implied = ["system:serviceaccounts", f"system:serviceaccounts:{ns}"]
    else:
        check(RequestAttributes(verb="impersonate", resource="users", name=name))
        implied = []
    for g in groups:
        check(RequestAttributes(verb="impersonate", resource="groups", name=g))
    if uid is not None:
        check(RequestAttributes(verb="impersonate", group="authentication.k8s.io", resource="uids", name=uid))
    for k, values in extra.items():
        for v in values:
            check(
                RequestAttributes(
                    verb="impersonate", group="authentication.k8s.io", resource="userextras", subresource=k, name=v
                )
            )
    all_groups = list(groups)
    for g in implied:
        if g not in all_groups:
            all_groups.append(g)
    if name != "system:anonymous" and "system:authenticated" not in all_groups:
        all_groups.append("system:authenticated")
    return UserInfo(name, uid or "", tuple(all_groups), {k: ",".join(v) for k, v in extra.items()})
