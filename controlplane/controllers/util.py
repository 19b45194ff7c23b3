"""Small pure helpers every controller shares: keys, selectors, owner references, pod state, time.

Role: the vocabulary the planners are written in. Everything here is a pure function over plain
JSON dicts (the objects exactly as the API serves them), so planners stay table-testable.

Invariants: nothing here mutates its arguments unless the name says so (``set_condition``);
times are timezone-aware UTC ``datetime``s, serialised as RFC 3339 with a ``Z`` like Kubernetes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

Obj = dict[str, Any]

# ---------------------------------------------------------------------------------------------
# keys and metadata


def meta(obj: Mapping[str, Any]) -> dict[str, Any]:
    m = obj.get("metadata")
    return m if isinstance(m, dict) else {}


def name_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("name", ""))


def namespace_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("namespace") or "")


def uid_of(obj: Mapping[str, Any]) -> str:
    return str(meta(obj).get("uid", ""))


def key_of(obj: Mapping[str, Any]) -> str:
    """The informer cache key: ``ns/name`` for namespaced objects, ``name`` otherwise."""
    ns = namespace_of(obj)
    return f"{ns}/{name_of(obj)}" if ns else name_of(obj)


def split_key(key: str) -> tuple[str, str]:
    """``ns/name`` → (ns, name); ``name`` → ("", name)."""
    ns, _, name = key.rpartition("/")
    return ns, name


def labels_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(meta(obj).get("labels") or {})


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict(meta(obj).get("annotations") or {})


def is_deleting(obj: Mapping[str, Any]) -> bool:
    return bool(meta(obj).get("deletionTimestamp"))


def generation_of(obj: Mapping[str, Any]) -> int:
    return int(meta(obj).get("generation") or 0)


# ---------------------------------------------------------------------------------------------
# label selectors (metav1.LabelSelector semantics)


class SelectorError(ValueError):
    """A label selector that cannot be evaluated (unknown operator, missing values)."""


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Does a ``metav1.LabelSelector`` dict select these labels?

    As in Kubernetes, workload selectors are ANDs of ``matchLabels`` and ``matchExpressions``; an
    empty selector ({}) selects everything and a missing one (None) selects nothing.
    """
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op = expr.get("key", ""), expr.get("operator", "")
        values = expr.get("values") or []
        if op == "In":
            if labels.get(key) not in values:
                return False
        elif op == "NotIn":
            if key in labels and labels[key] in values:
                return False
        elif op == "Exists":
            if key not in labels:
                return False
        elif op == "DoesNotExist":
            if key in labels:
                return False
        else:
            raise SelectorError(f"unknown label selector operator {op!r} for key {key!r}")
    return True


def selector_is_empty(selector: Mapping[str, Any] | None) -> bool:
    return not selector or (not selector.get("matchLabels") and not selector.get("matchExpressions"))


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """The selector in the string form list calls and the scale subresource use (``a=b,c in (d)``)."""
    parts: list[str] = []
    for k, v in sorted((selector or {}).get("matchLabels", {}).items()):
        parts.append(f"{k}={v}")
    for expr in (selector or {}).get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


# ---------------------------------------------------------------------------------------------
# owner references


def owner_refs(obj: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(meta(obj).get("ownerReferences") or [])


def controller_ref(obj: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ownerReference with ``controller: true``, if any (at most one is allowed)."""
    for ref in owner_refs(obj):
        if ref.get("controller"):
            return ref
    return None


def is_controlled_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    ref = controller_ref(obj)
    return ref is not None and ref.get("uid") == uid_of(owner)


def new_controller_ref(owner: Mapping[str, Any], block_owner_deletion: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": owner.get("apiVersion", ""),
        "kind": owner.get("kind", ""),
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": True,
        "blockOwnerDeletion": block_owner_deletion,
    }


# ---------------------------------------------------------------------------------------------
# pods


def pod_phase(pod: Mapping[str, Any]) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def get_condition(obj: Mapping[str, Any], type_: str) -> dict[str, Any] | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return dict(c)
    return None


def is_pod_ready(pod: Mapping[str, Any]) -> bool:
    c = get_condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def is_pod_active(pod: Mapping[str, Any]) -> bool:
    """Counts toward a controller's replicas: not finished and not on its way out."""
    return pod_phase(pod) not in ("Succeeded", "Failed") and not is_deleting(pod)


def is_pod_available(pod: Mapping[str, Any], min_ready_seconds: int, now: datetime) -> bool:
    """Ready for at least ``minReadySeconds`` (measured from the Ready condition's transition)."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    c = get_condition(pod, "Ready") or {}
    since = parse_time(c.get("lastTransitionTime"))
    return since is not None and since + timedelta(seconds=min_ready_seconds) <= now


def pod_ready_since(pod: Mapping[str, Any]) -> datetime | None:
    c = get_condition(pod, "Ready")
    if c is None or c.get("status") != "True":
        return None
    return parse_time(c.get("lastTransitionTime"))


def node_name_of(pod: Mapping[str, Any]) -> str:
    return str((pod.get("spec") or {}).get("nodeName") or "")


# ---------------------------------------------------------------------------------------------
# conditions


def set_condition(
    status: dict[str, Any],
    type_: str,
    cond_status: str,
    reason: str,
    message: str,
    now: datetime,
    *,
    update_time_field: str | None = None,
) -> None:
    """Set a condition in ``status['conditions']`` in place.

    ``lastTransitionTime`` changes only when the status flips, as Kubernetes does;
    ``update_time_field`` (Deployments: ``lastUpdateTime``) changes whenever reason or message do.
    """
    conds: list[dict[str, Any]] = status.setdefault("conditions", [])
    ts = format_time(now)
    for c in conds:
        if c.get("type") != type_:
            continue
        changed = c.get("status") != cond_status
        if changed:
            c["lastTransitionTime"] = ts
        if update_time_field and (changed or c.get("reason") != reason or c.get("message") != message):
            c[update_time_field] = ts
        c.update(status=cond_status, reason=reason, message=message)
        return
    new = {"type": type_, "status": cond_status, "reason": reason, "message": message, "lastTransitionTime": ts}
    if update_time_field:
        new[update_time_field] = ts
    conds.append(new)


# ---------------------------------------------------------------------------------------------
# time


def format_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(s: object) -> datetime | None:
    if not isinstance(s, str) or not s:
        return None
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00")).astimezone(UTC)
    except ValueError:
        return None


def creation_time(obj: Mapping[str, Any]) -> datetime:
    return parse_time(meta(obj).get("creationTimestamp")) or datetime.fromtimestamp(0, UTC)


_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """A Go duration (``40s``, ``1m30s``, ``500ms``) or a bare number of seconds → seconds."""
    s = text.strip()
    try:
        return float(s)
    except ValueError:
        pass
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise ValueError(f"invalid duration {text!r}: want a Go duration such as 40s, 1m30s or 500ms")
    return total


# ---------------------------------------------------------------------------------------------
# hashing (pod-template-hash, controller-revision-hash)

# Kubernetes' rand.SafeEncodeString alphabet: no vowels (no accidental words), no confusable 0/1/3.
_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def safe_encode(s: str) -> str:
    return "".join(_SAFE_ALPHABET[ord(c) % len(_SAFE_ALPHABET)] for c in s)


def template_hash(template: Mapping[str, Any], collision_count: int | None = None) -> str:
    """The ``pod-template-hash`` of a pod template.

    Kubernetes hashes the template with FNV-32a over a ``spew`` dump of the Go struct, adds the
    collision count, and encodes the decimal number with SafeEncodeString. A Go struct dump cannot
    be reproduced from JSON, so we hash the canonical JSON (sorted keys, compact) instead: the same
    algorithm and alphabet over a stable serialisation. Equal templates → equal hashes, across
    restarts and processes; values differ from a real cluster's.
    """
    data = json.dumps(template, sort_keys=True, separators=(",", ":")).encode()
    if collision_count:
        data += str(collision_count).encode()
    return safe_encode(str(fnv32a(data)))


def _drop_nulls(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _drop_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [_drop_nulls(x) for x in v]
    return v


def without_hash_label(template: Mapping[str, Any], label: str = "pod-template-hash") -> dict[str, Any]:
    """A copy of a pod template without the hash label, for EqualIgnoreHash.

    JSON nulls are dropped too: Go clients (kubectl rollout undo) send ``creationTimestamp: null``
    inside templates, which Kubernetes' typed comparison treats as absent.
    """
    t = _drop_nulls(json.loads(json.dumps(template)))
    labels = (t.get("metadata") or {}).get("labels")
    if isinstance(labels, dict):
        labels.pop(label, None)
        if not labels:
            t["metadata"].pop("labels")
    if isinstance(t.get("metadata"), dict) and not t["metadata"]:
        t.pop("metadata")
    return dict(t)


def templates_equal_ignoring_hash(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return without_hash_label(a) == without_hash_label(b)


def int_or_percent(value: object, total: int, round_up: bool) -> int:
    """Resolve an IntOrString (``2`` or ``"25%"``) against ``total``, rounding like Kubernetes."""
    if value is None:
        return 0
    if isinstance(value, bool):
        raise ValueError(f"invalid int-or-percent value {value!r}")
    if isinstance(value, int):
        return value
    s = str(value).strip()
    if s.endswith("%"):
        try:
            pct = int(s[:-1])
        except ValueError as exc:
            raise ValueError(f"invalid percentage {value!r}") from exc
        num = pct * total
        return -(-num // 100) if round_up else num // 100
    try:
        return int(s)
    except ValueError as exc:
        raise ValueError(f"invalid int-or-percent value {value!r}") from exc


def unique(items: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for i in items:
        seen.setdefault(i, None)
    return list(seen)
