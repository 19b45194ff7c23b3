"""The rbac.authorization.k8s.io/v1 kinds: defaulting, validation and table rows.

Role: the pieces of Kubernetes' ``pkg/apis/rbac`` that the generic machinery needs for Role,
ClusterRole, RoleBinding and ClusterRoleBinding, kept here (not in the already long
``defaults.py``/``validation.py``/``tables.py``) and plugged into those modules' per-kind tables:

- defaults (``pkg/apis/rbac/v1/defaults.go``): a binding's ``roleRef.apiGroup`` and a User/Group
  subject's ``apiGroup`` default to ``rbac.authorization.k8s.io``;
- validation (``pkg/apis/rbac/validation/validation.go``) with Kubernetes' field paths and words
  (``rules[0].verbs: Required value: verbs must contain at least one value``,
  ``roleRef: Invalid value: …: cannot change roleRef``);
- table printers (``pkg/printers/internalversion/printers.go``): Role/ClusterRole ``NAME CREATED AT``,
  bindings ``NAME ROLE AGE`` plus wide ``USERS GROUPS SERVICEACCOUNTS``.

Pure functions of their arguments; thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

RBAC_GROUP = "rbac.authorization.k8s.io"

Obj = dict[str, Any]


class FieldErrors(Protocol):
    """What validation.py's error collector offers (duck-typed to avoid an import cycle)."""

    def required(self, path: str, detail: str = "") -> None: ...
    def invalid(self, path: str, value: Any, detail: str) -> None: ...
    def not_supported(self, path: str, value: Any, supported: Any) -> None: ...


# --- defaults -------------------------------------------------------------------------------


def default_binding(obj: Obj) -> None:
    ref = obj.get("roleRef")
    if isinstance(ref, dict) and not ref.get("apiGroup"):
        ref["apiGroup"] = RBAC_GROUP
    for s in obj.get("subjects") or []:
        if isinstance(s, dict) and not s.get("apiGroup") and s.get("kind") in ("User", "Group"):
            s["apiGroup"] = RBAC_GROUP


DEFAULTS: dict[str, Callable[[Obj], None]] = {
    "rolebindings": default_binding,
    "clusterrolebindings": default_binding,
}


# --- validation -----------------------------------------------------------------------------


def path_segment_name_errors(name: str) -> list[str]:
    """``path.ValidatePathSegmentName``: RBAC names may hold ``:`` (``system:node``), not ``/`` or ``%``."""
    if name in (".", ".."):
        return [f"may not be '{name}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in name]


def _strs(v: Any) -> list[str]:
    return [x for x in v if isinstance(x, str)] if isinstance(v, list) else []


def validate_rule(e: FieldErrors, rule: Any, namespaced: bool, path: str) -> None:
    """ValidatePolicyRule."""
    if not isinstance(rule, dict):
        e.invalid(path, rule, "must be an object")
        return
    if not _strs(rule.get("verbs")):
        e.required(f"{path}.verbs", "verbs must contain at least one value")
    urls = _strs(rule.get("nonResourceURLs"))
    if urls:
        if namespaced:
            e.invalid(f"{path}.nonResourceURLs", urls, "namespaced rules cannot apply to non-resource URLs")
        if rule.get("apiGroups") or rule.get("resources") or rule.get("resourceNames"):
            e.invalid(
                f"{path}.nonResourceURLs", urls, "rules cannot apply to both regular resources and non-resource URLs"
            )
        return
    if not isinstance(rule.get("apiGroups"), list) or not rule.get("apiGroups"):
        e.required(f"{path}.apiGroups", "resource rules must supply at least one api group")
    if not _strs(rule.get("resources")):
        e.required(f"{path}.resources", "resource rules must supply at least one resource")


def _rules(e: FieldErrors, obj: Mapping[str, Any], namespaced: bool) -> None:
    rules = obj.get("rules")
    if rules is None:
        return
    if not isinstance(rules, list):
        e.invalid("rules", rules, "must be a list")
        return
    for i, rule in enumerate(rules):
        validate_rule(e, rule, namespaced, f"rules[{i}]")


def validate_role(e: FieldErrors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    _rules(e, obj, True)


def validate_clusterrole(e: FieldErrors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    _rules(e, obj, False)
    agg = obj.get("aggregationRule")
    if agg is None:
        return
    selectors = agg.get("clusterRoleSelectors") if isinstance(agg, dict) else None
    if not isinstance(selectors, list) or not selectors:
        e.required(
            "aggregationRule.clusterRoleSelectors",
            "at least one clusterRoleSelector required if aggregationRule is non-nil",
        )
        return
    for i, sel in enumerate(selectors):
        if not isinstance(sel, dict):
            e.invalid(f"aggregationRule.clusterRoleSelectors[{i}]", sel, "must be a label selector")


def _subject(e: FieldErrors, s: Any, namespaced: bool, path: str) -> None:
    """ValidateRoleBindingSubject."""
    if not isinstance(s, dict):
        e.invalid(path, s, "must be an object")
        return
    name, kind, group = s.get("name"), s.get("kind"), s.get("apiGroup") or ""
    if not name:
        e.required(f"{path}.name")
    if kind == "ServiceAccount":
        if group != "":
            e.not_supported(f"{path}.apiGroup", group, [""])
        if not namespaced and not s.get("namespace"):
            e.required(f"{path}.namespace")
    elif kind in ("User", "Group"):
        if group != RBAC_GROUP:
            e.not_supported(f"{path}.apiGroup", group, [RBAC_GROUP])
    else:
        e.not_supported(f"{path}.kind", kind, ["ServiceAccount", "User", "Group"])


def _binding(namespaced: bool) -> Callable[[FieldErrors, Mapping[str, Any], Mapping[str, Any] | None], None]:
    kinds = ["Role", "ClusterRole"] if namespaced else ["ClusterRole"]

    def check(e: FieldErrors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
        ref = obj.get("roleRef")
        if not isinstance(ref, dict):
            e.required("roleRef")
        else:
            if ref.get("apiGroup") != RBAC_GROUP:
                e.not_supported("roleRef.apiGroup", ref.get("apiGroup") or "", [RBAC_GROUP])
            if ref.get("kind") not in kinds:
                e.not_supported("roleRef.kind", ref.get("kind") or "", kinds)
            if not ref.get("name"):
                e.required("roleRef.name")
            elif not isinstance(ref["name"], str) or "/" in ref["name"] or ref["name"] in (".", ".."):
                e.invalid("roleRef.name", ref["name"], "may not contain '/' or be '.' or '..'")
            if old is not None and isinstance(old.get("roleRef"), dict) and old["roleRef"] != ref:
                e.invalid("roleRef", ref, "cannot change roleRef")
        subjects = obj.get("subjects")
        if subjects is not None and not isinstance(subjects, list):
            e.invalid("subjects", subjects, "must be a list")
            return
        for i, s in enumerate(subjects or []):
            _subject(e, s, namespaced, f"subjects[{i}]")

    return check


VALIDATORS: dict[str, Callable[[Any, Mapping[str, Any], Mapping[str, Any] | None], None]] = {
    "roles": validate_role,
    "clusterroles": validate_clusterrole,
    "rolebindings": _binding(True),
    "clusterrolebindings": _binding(False),
}


# --- tables ---------------------------------------------------------------------------------


def subjects_strings(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    """(users, groups, serviceaccounts) joined by ", " as kubectl prints them."""
    users: list[str] = []
    groups: list[str] = []
    sas: list[str] = []
    for s in obj.get("subjects") or []:
        if not isinstance(s, dict):
            continue
        if s.get("kind") == "User":
            users.append(str(s.get("name", "")))
        elif s.get("kind") == "Group":
            groups.append(str(s.get("name", "")))
        elif s.get("kind") == "ServiceAccount":
            sas.append(f"{s.get('namespace', '')}/{s.get('name', '')}")
    return ", ".join(users), ", ".join(groups), ", ".join(sas)


def role_ref_string(obj: Mapping[str, Any]) -> str:
    ref = obj.get("roleRef") if isinstance(obj.get("roleRef"), dict) else {}
    assert isinstance(ref, dict)
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


def created_at(obj: Mapping[str, Any]) -> str:
    md = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(md, dict)
    return str(md.get("creationTimestamp") or "")


def role_row(name: str, obj: Mapping[str, Any], now: datetime) -> list[str | int]:
    return [name, created_at(obj)]


def binding_cells(obj: Mapping[str, Any]) -> tuple[str, str, str, str]:
    users, groups, sas = subjects_strings(obj)
    return role_ref_string(obj), users, groups, sas


# --- aggregation ----------------------------------------------------------------------------


def aggregate_rules(role: Obj, all_roles: list[Obj]) -> list[Obj] | None:
    """The rules an aggregated ClusterRole should hold (deduplicated, stable order), or None.

    The union of the rules of every other ClusterRole whose labels match one of its
    ``aggregationRule.clusterRoleSelectors``, roles taken in name order (used by the aggregation
    controller and by the API server's bootstrap).
    """
    from controlplane.api.errors import ApiError
    from controlplane.api.selectors import LabelSelector

    agg = role.get("aggregationRule")
    if not isinstance(agg, dict):
        return None
    selectors = []
    for sel in agg.get("clusterRoleSelectors") or []:
        try:
            selectors.append(LabelSelector.from_dict(sel))
        except ApiError:
            continue
    me = (role.get("metadata") or {}).get("name")
    out: list[Obj] = []
    for other in sorted(all_roles, key=lambda r: str((r.get("metadata") or {}).get("name") or "")):
        md = other.get("metadata") or {}
        if md.get("name") == me:
            continue
        labels = md.get("labels") or {}
        if any(s.matches(labels) for s in selectors):
            for r in other.get("rules") or []:
                if r not in out:
                    out.append(r)
    return out
