"""RBAC privilege-escalation prevention (``pkg/registry/rbac/escalation_check.go`` and
``pkg/registry/rbac/validation/rule.go``'s ``Covers``).

Role: a user may create or update a Role/ClusterRole only with rules they hold themselves, unless
they may ``escalate`` roles; a binding only when they hold every rule of the role it references,
unless they may ``bind`` that role. ``system:masters`` always may (``EscalationAllowed``). The
check runs as an admission step (``RBACEscalation.admit``) with the requesting user.

Coverage is Kubernetes': each requested rule is broken into single (verb, group, resource, name)
or (verb, URL) grants, and each must be covered by one rule the user holds (``*`` covers
anything; ``pods/*`` covers every subresource of pods; resourceNames narrow).

Pure apart from reading the policy index and asking the authorizer; thread-safe.
"""

from __future__ import annotations

import json
from itertools import product
from typing import Any

from controlplane.api import errors, registry
from controlplane.apiserver.auth import Authorizer, RequestAttributes, UserInfo
from controlplane.apiserver.authz.rbac import PolicyIndex

Obj = dict[str, Any]


def _covers_one(
    owner: Obj, verb: str, group: str | None, resource: str | None, name: str | None, url: str | None
) -> bool:
    verbs = owner.get("verbs") or ()
    if "*" not in verbs and verb not in verbs:
        return False
    if url is not None:
        for u in owner.get("nonResourceURLs") or ():
            if u == "*" or u == url or (u.endswith("*") and url.startswith(u[:-1])):
                return True
        return False
    groups = owner.get("apiGroups") or ()
    if "*" not in groups and group not in groups:
        return False
    ok = False
    for r in owner.get("resources") or ():
        if r == "*" or r == resource or (r.endswith("/*") and (resource or "").startswith(r[:-1])):
            ok = True
            break
    if not ok:
        return False
    names = owner.get("resourceNames") or ()
    return not names or (name is not None and name in names)


def uncovered(owner_rules: list[Obj], wanted: list[Obj]) -> list[Obj]:
    """The wanted rules not wholly covered by ``owner_rules`` (``validation.Covers``)."""
    missing: list[Obj] = []
    for rule in wanted:
        verbs = rule.get("verbs") or []
        if rule.get("nonResourceURLs"):
            atoms: list[tuple[str, str | None, str | None, str | None, str | None]] = [
                (v, None, None, None, u) for v, u in product(verbs, rule["nonResourceURLs"])
            ]
        else:
            names = rule.get("resourceNames") or [None]
            atoms = [
                (v, g, r, n, None)
                for v, g, r, n in product(verbs, rule.get("apiGroups") or [], rule.get("resources") or [], names)
            ]
        if not all(any(_covers_one(o, *atom) for o in owner_rules) for atom in atoms):
            missing.append(rule)
    return missing


def rule_string(rule: Obj) -> str:
    """A rule as Kubernetes' ``CompactString`` prints it."""
    parts = []
    for label, key in (
        ("APIGroups", "apiGroups"),
        ("Resources", "resources"),
        ("ResourceNames", "resourceNames"),
        ("NonResourceURLs", "nonResourceURLs"),
        ("Verbs", "verbs"),
    ):
        if rule.get(key):
            parts.append(f"{label}:[{', '.join(json.dumps(v) for v in rule[key])}]")
    return "{" + ", ".join(parts) + "}"


def _groups(user: UserInfo) -> str:
    return "[" + " ".join(json.dumps(g) for g in user.groups) + "]"


class RBACEscalation:
    def __init__(self, index: PolicyIndex, authorizer: Authorizer) -> None:
        self.index = index
        self.authorizer = authorizer

    def _allowed(self, user: UserInfo, verb: str, resource: str, namespace: str, name: str) -> bool:
        attrs = RequestAttributes(
            verb=verb, group=registry.RBAC_GROUP, resource=resource, namespace=namespace, name=name
        )
        return self.authorizer.authorize(user, attrs)[0]

    def _refuse(self, res: registry.Resource, name: str, user: UserInfo, missing: list[Obj], extra: str = "") -> None:
        detail = extra or (
            f'user "{user.name}" (groups={_groups(user)}) is attempting to grant RBAC permissions not currently '
            "held:\n" + "\n".join(rule_string(r) for r in missing)
        )
        raise errors.Forbidden(
            f'{res.plural}.{res.group} "{name}" is forbidden: {detail}', kind=res.plural, group=res.group, name=name
        )

    def admit(self, res: registry.Resource, obj: Obj, old: Obj | None, user: UserInfo | None) -> None:
        if user is None or res.group != registry.RBAC_GROUP or "system:masters" in user.groups:
            return
        md = obj.get("metadata") or {}
        name, ns = str(md.get("name") or ""), str(md.get("namespace") or "")
        if res.plural in ("roles", "clusterroles"):
            if (
                old is not None
                and (old.get("rules") or []) == (obj.get("rules") or [])
                and old.get("aggregationRule") == obj.get("aggregationRule")
            ):
                return  # nothing granted changed (labels, annotations)
            if self._allowed(user, "escalate", res.plural, ns, name):
                return
            if res.plural == "clusterroles" and obj.get("aggregationRule"):
                self._refuse(res, name, user, [], "must have cluster-admin privileges to use the aggregationRule")
            missing = uncovered(
                self.index.rules_for(user, ns), [r for r in obj.get("rules") or [] if isinstance(r, dict)]
            )
            if missing:
                self._refuse(res, name, user, missing)
            return
        if res.plural in ("rolebindings", "clusterrolebindings"):
            ref = obj.get("roleRef") or {}
            if old is not None and old.get("roleRef") == ref and old.get("subjects") == obj.get("subjects"):
                return  # only metadata changed (IsOnlyMutatingGCFields and the like)
            role_kind, role_name = str(ref.get("kind") or ""), str(ref.get("name") or "")
            role_res = "roles" if role_kind == "Role" else "clusterroles"
            if self._allowed(user, "bind", role_res, ns, role_name):
                return
            if role_kind == "Role":
                rules = self.index.roles.get((ns, role_name))
            else:
                rules = self.index.cluster_roles.get(role_name)
            if rules is None:
                self._refuse(res, name, user, [], f'{role_res}.{registry.RBAC_GROUP} "{role_name}" not found')
                return
            missing = uncovered(self.index.rules_for(user, ns), rules)
            if missing:
                self._refuse(res, name, user, missing)
