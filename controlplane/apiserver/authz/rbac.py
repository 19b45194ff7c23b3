"""The RBAC authorizer: Roles, ClusterRoles and their bindings decide.

Role: kube-apiserver's ``plugin/pkg/auth/authorizer/rbac/rbac.go`` and
``pkg/apis/rbac/v1/evaluation_helpers.go``. ``PolicyIndex`` holds every Role, ClusterRole,
RoleBinding and ClusterRoleBinding (fed by the server's watch cache, see ``feed.py``) and an index
of bindings by subject (``("User", name)`` / ``("Group", name)``; a ServiceAccount subject is the
user ``system:serviceaccount:<ns>:<name>``), rebuilt lazily after any binding changes — so a
decision looks only at the bindings naming this user or one of its groups, never at all of them.
kube-apiserver caches no decision either; roles are resolved at decision time, so a rule added to a
role (or by the aggregation controller) counts at once.

Rule matching is Kubernetes': ``*`` matches any verb, group or resource; ``pods/*`` any
subresource of pods, ``*/scale`` the scale subresource of anything; ``resourceNames`` restricts by
name; non-resource URLs match exactly or by a trailing ``*`` prefix.

Concurrency: ``apply`` runs on the event loop (watch delivery); ``authorize`` and ``rules_for`` on
the loop or store threads. A lock guards the maps; the subject index is replaced atomically.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from controlplane.apiserver.auth import RequestAttributes, UserInfo

Obj = dict[str, Any]
Key = tuple[str, str]


def verb_matches(rule: Obj, verb: str) -> bool:
    verbs = rule.get("verbs") or ()
    return "*" in verbs or verb in verbs


def resource_matches(rule: Obj, resource: str, subresource: str) -> bool:
    combined = f"{resource}/{subresource}" if subresource else resource
    for r in rule.get("resources") or ():
        if r == "*" or r == combined:
            return True
        if subresource and (r == f"{resource}/*" or r == f"*/{subresource}"):
            return True
    return False


def rule_allows(rule: Obj, attrs: RequestAttributes) -> bool:
    """``RuleAllows`` of Kubernetes' RBAC evaluation."""
    if not verb_matches(rule, attrs.verb):
        return False
    if not attrs.resource_request:
        for url in rule.get("nonResourceURLs") or ():
            if url == "*" or url == attrs.path or (url.endswith("*") and attrs.path.startswith(url[:-1])):
                return True
        return False
    groups = rule.get("apiGroups") or ()
    if "*" not in groups and attrs.group not in groups:
        return False
    if not resource_matches(rule, attrs.resource, attrs.subresource):
        return False
    names = rule.get("resourceNames") or ()
    return not names or attrs.name in names


def rules_allow(rules: Iterable[Obj], attrs: RequestAttributes) -> bool:
    return any(rule_allows(r, attrs) for r in rules)


def subject_key(subject: Obj, binding_namespace: str) -> Key | None:
    kind, name = subject.get("kind"), subject.get("name")
    if not isinstance(name, str) or not name:
        return None
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or binding_namespace
        return ("User", f"system:serviceaccount:{ns}:{name}")
    if kind in ("User", "Group"):
        return (str(kind), name)
    return None


def user_keys(user: UserInfo) -> list[Key]:
    return [("User", user.name), *(("Group", g) for g in user.groups)]


def describe_subject(key: Key) -> str:
    kind, name = key
    if kind == "User" and name.startswith("system:serviceaccount:"):
        ns, _, sa = name[len("system:serviceaccount:") :].partition(":")
        return f'ServiceAccount "{sa}/{ns}"'
    return f'{kind} "{name}"'


@dataclass(frozen=True, slots=True)
class _Grant:
    """One binding naming a subject: where it applies and which role it grants."""

    binding_kind: str  # RoleBinding / ClusterRoleBinding
    binding: str
    namespace: str  # "" for ClusterRoleBindings
    role_kind: str  # Role / ClusterRole
    role: str


class PolicyIndex:
    """Every RBAC object, and bindings by subject (an empty index allows nothing)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.roles: dict[tuple[str, str], list[Obj]] = {}
        self.cluster_roles: dict[str, list[Obj]] = {}
        self._bindings: dict[tuple[str, str], Obj] = {}  # (namespace or "", name) → binding
        self._index: dict[Key, list[_Grant]] | None = {}
        self.synced = False

    # -- feeding ---------------------------------------------------------------------------

    def apply(self, plural: str, obj: Obj, deleted: bool) -> None:
        md = obj.get("metadata") or {}
        name, ns = str(md.get("name") or ""), str(md.get("namespace") or "")
        rules = [r for r in obj.get("rules") or [] if isinstance(r, dict)]
        with self._lock:
            if plural == "roles":
                if deleted:
                    self.roles.pop((ns, name), None)
                else:
                    self.roles[(ns, name)] = rules
            elif plural == "clusterroles":
                if deleted:
                    self.cluster_roles.pop(name, None)
                else:
                    self.cluster_roles[name] = rules
            elif plural in ("rolebindings", "clusterrolebindings"):
                key = (ns if plural == "rolebindings" else "", name)
                if deleted:
                    self._bindings.pop(key, None)
                else:
                    self._bindings[key] = obj
                self._index = None  # rebuilt on next use

    def reset(self) -> None:
        with self._lock:
            self.roles.clear()
            self.cluster_roles.clear()
            self._bindings.clear()
            self._index = {}

    def _grants(self) -> dict[Key, list[_Grant]]:
        index = self._index
        if index is not None:
            return index
        with self._lock:
            if self._index is not None:
                return self._index
            built: dict[Key, list[_Grant]] = {}
            for (ns, name), b in self._bindings.items():
                ref = b.get("roleRef") or {}
                grant = _Grant(
                    "RoleBinding" if ns else "ClusterRoleBinding",
                    name,
                    ns,
                    str(ref.get("kind") or ""),
                    str(ref.get("name") or ""),
                )
                for s in b.get("subjects") or []:
                    key = subject_key(s, ns) if isinstance(s, dict) else None
                    if key is not None:
                        built.setdefault(key, []).append(grant)
            self._index = built
            return built

    def _role_rules(self, grant: _Grant) -> list[Obj]:
        if grant.role_kind == "ClusterRole":
            return self.cluster_roles.get(grant.role, [])
        if grant.role_kind == "Role" and grant.namespace:
            return self.roles.get((grant.namespace, grant.role), [])
        return []

    # -- questions -------------------------------------------------------------------------

    def authorize(self, user: UserInfo, attrs: RequestAttributes) -> tuple[bool, str]:
        index = self._grants()
        for key in user_keys(user):
            for grant in index.get(key, ()):
                if grant.namespace and grant.namespace != attrs.namespace:
                    continue
                if rules_allow(self._role_rules(grant), attrs):
                    return True, (
                        f'RBAC: allowed by {grant.binding_kind} "{grant.binding}/{grant.namespace}" '
                        if grant.namespace
                        else f'RBAC: allowed by {grant.binding_kind} "{grant.binding}" '
                    ) + f'of {grant.role_kind} "{grant.role}" to {describe_subject(key)}'
        return False, ""

    def rules_for(self, user: UserInfo, namespace: str) -> list[Obj]:
        """Every rule that applies to ``user`` in ``namespace`` (cluster-wide ones included)."""
        index = self._grants()
        out: list[Obj] = []
        for key in user_keys(user):
            for grant in index.get(key, ()):
                if grant.namespace and grant.namespace != namespace:
                    continue
                for r in self._role_rules(grant):
                    if r not in out:
                        out.append(r)
        return out


class RBACAuthorizer:
    """The ``RBAC`` mode of ``--authorization-mode``."""

    def __init__(self, index: PolicyIndex) -> None:
        self.index = index

    def authorize(self, user: UserInfo, attrs: RequestAttributes) -> tuple[bool, str]:
        return self.index.authorize(user, attrs)
