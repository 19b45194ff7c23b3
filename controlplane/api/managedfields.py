"""Server-side apply: field sets, ownership per manager, apply merge, conflicts (``managedFields``).

Role: the pure half of Kubernetes' field manager (sigs.k8s.io/structured-merge-diff ``typed/``,
``merge/update.go``, ``fieldpath/serialize.go``; k8s.io/apiserver
``pkg/endpoints/handlers/fieldmanager`` / ``managedfields/internal``), written for kubelab's plain
dict objects. ``resources.py`` calls ``record_update`` on every write of a non-apply writer and
``apply`` for ``application/apply-patch+yaml``.

Field sets are kept in Kubernetes' FieldsV1 encoding directly — a tree of dicts whose keys are
``f:<field>``, ``k:<json key>`` (list-map element), ``v:<json value>`` (set element) and ``.``
(the node itself is a member, not only its children). A leaf member is ``{}``. Set operations
work on those trees, so encoding and decoding are the identity (plus validation).

Schema: how each list and map merges comes from the served OpenAPI schema of the object's kind
(``openapi.schema_for_kind``), read as kube-openapi's ``schemaconv`` reads it for
structured-merge-diff: ``x-kubernetes-list-type`` ``map`` (keyed by ``x-kubernetes-list-map-keys``:
containers by name, container ports by containerPort+protocol, service ports by port+protocol),
``set`` (finalizers, by value) or ``atomic``; without one, ``x-kubernetes-patch-strategy: merge``
with a merge key is a list-map, without a key a set; every other list is atomic.
``x-kubernetes-map-type: atomic`` (on the property or on the referenced struct, e.g. LabelSelector,
ServiceSpec.selector) makes a map or struct one value; other maps and structs are granular. Kinds
without a schema, and ``x-kubernetes-preserve-unknown-fields`` values, are deduced as
structured-merge-diff does (maps granular, lists atomic), with ``metadata`` still ObjectMeta.
Which structs exist in the Go zero object a create is compared to comes from the schema too:
non-pointer structs (``default: {}``) and required lists/maps (no ``omitempty``).

Invariants: inputs are never mutated; trees never hold an empty non-leaf ``{}`` except as a leaf.
Pure; thread-safe: the schema nodes (``_T``) are compiled lazily into module caches keyed by the
(immutable) schema dicts and by served kinds only, so they are bounded; two threads racing on a
first use only compile the same node twice.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

from controlplane.api import openapi

__all__ = [
    "ANCIENT",
    "MAX_UPDATE_MANAGERS",
    "ApplyConflict",
    "Entry",
    "apply",
    "canonical",
    "conflict_message",
    "decode",
    "difference",
    "encode",
    "field_set",
    "intersection",
    "manager_from_user_agent",
    "path_strings",
    "record_update",
    "root_type",
    "union",
]

Tree = dict[str, Any]
MAX_UPDATE_MANAGERS = 10  # apiserver managedfields/internal/capmanagers.go DefaultMaxUpdateManagers
ANCIENT = "ancient-changes"

_DEFAULT_KEY_VALUES = {"protocol": "TCP"}  # the schema default SSA uses for a missing key field
# Fields the field manager never tracks (apiserver managedfields/internal/stripmeta.go).
_STRIPPED_META = (
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "generation",
    "managedFields",
    "resourceVersion",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)


class ApplyConflict(Exception):
    """An apply changes fields other managers own (``conflicts``: (manager id, path) pairs)."""

    def __init__(self, conflicts: list[tuple[str, str]]) -> None:
        super().__init__(conflict_message(conflicts))
        self.conflicts = conflicts


@dataclass
class Entry:
    """One ``managedFields`` entry: ``(manager, operation, apiVersion, subresource)`` owns ``fields``."""

    manager: str
    operation: str  # "Apply" | "Update"
    api_version: str
    time: str
    fields: Tree = field(default_factory=dict)
    subresource: str = ""
    ordered: bool = False  # ``fields`` already in canonical order (a create's entry)

    def ident(self) -> tuple[str, str, str, str]:
        # Appliers are one manager whatever the version they apply (BuildManagerIdentifier).
        version = "" if self.operation == "Apply" else self.api_version
        return (self.manager, self.operation, version, self.subresource)

    def printed(self) -> str:
        """The manager as conflict messages print it (apiserver internal/conflict.go printManager)."""
        out = json.dumps(self.manager)
        if self.subresource:
            out += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            out += f" using {self.api_version}"
        return out

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.fields if self.ordered else canonical(self.fields),
        }
        if self.subresource:
            d["subresource"] = self.subresource
        return d


# -- the schema, as structured-merge-diff sees it ----------------------------------------------


class _T:
    """One schema node: how a value at this place merges, and its children (compiled lazily)."""

    __slots__ = ("_extra", "_items", "_kids", "_props", "atomic", "granular", "keys", "meta_root", "zero")

    def __init__(self, schema: dict[str, Any] | None, *, meta_root: bool = False) -> None:
        self._kids: dict[str, _T] = {}
        self.meta_root = meta_root
        self.keys: tuple[str, ...] | None = None
        self.zero: frozenset[str] = frozenset()
        self._props: dict[str, Any] | None = None
        self._extra: dict[str, Any] | None = None
        self._items: dict[str, Any] | None = None
        self.atomic = False
        self.granular = False
        if schema is None:
            return  # deduced: maps granular, lists atomic
        resolved = openapi.resolve(schema)
        if resolved.get("x-kubernetes-preserve-unknown-fields") or schema.get("x-kubernetes-preserve-unknown-fields"):
            return
        props = resolved.get("properties")
        extra = resolved.get("additionalProperties")
        items = schema.get("items") or resolved.get("items")
        self._props = props if isinstance(props, dict) else None
        self._extra = extra if isinstance(extra, dict) else None
        self._items = items if isinstance(items, dict) else None
        map_type = schema.get("x-kubernetes-map-type", resolved.get("x-kubernetes-map-type"))
        if (schema.get("type") or resolved.get("type")) == "array":
            list_type = schema.get("x-kubernetes-list-type")
            strategy = str(schema.get("x-kubernetes-patch-strategy") or "")
            if list_type == "map":
                self.keys = tuple(schema.get("x-kubernetes-list-map-keys") or ())
            elif list_type == "set":
                self.granular = True
            elif list_type is None and "merge" in strategy.split(","):
                key = schema.get("x-kubernetes-patch-merge-key")
                if key:
                    self.keys = (str(key),)
                else:
                    self.granular = True
            self.granular = self.granular or bool(self.keys)
            self.atomic = not self.granular
        else:
            self.atomic = map_type == "atomic"
        if self._props is not None:
            required = set(resolved.get("required") or ())
            self.zero = frozenset(
                k
                for k, p in self._props.items()
                if isinstance(p, dict)
                and (
                    ("default" in p and ("allOf" in p or "$ref" in p))  # a non-pointer struct
                    or (k in required and p.get("type") in ("array", "object"))  # no omitempty
                )
            )

    def child(self, name: str) -> _T:
        kid = self._kids.get(name)
        if kid is None:
            if self._props is not None:
                sub = self._props.get(name)
                kid = _compile(sub) if isinstance(sub, dict) else _DEDUCED
            elif self._extra is not None:
                kid = _compile(self._extra)
            elif self.meta_root and name == "metadata":
                kid = _compile({"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"})
            else:
                kid = _DEDUCED
            self._kids[name] = kid
        return kid

    @property
    def elem(self) -> _T:
        kid = self._kids.get("[]")
        if kid is None:
            kid = _compile(self._items) if self._items is not None else _DEDUCED
            self._kids["[]"] = kid
        return kid


_DEDUCED = _T(None)
# Schemas are module data that never change: compiled nodes are kept by identity.
_COMPILED: dict[int, tuple[dict[str, Any], _T]] = {}
_ROOTS: dict[tuple[str, str], _T] = {}
_DEDUCED_ROOT = _T(None, meta_root=True)


def _compile(schema: dict[str, Any]) -> _T:
    hit = _COMPILED.get(id(schema))
    if hit is not None and hit[0] is schema:
        return hit[1]
    node = _T(schema)
    _COMPILED[id(schema)] = (schema, node)  # the schema is kept alive, so its id stays its own
    return node


def root_type(obj: Any) -> _T:
    """The schema node of an object, by its ``apiVersion``/``kind`` (deduced when unknown)."""
    api_version = obj.get("apiVersion") if isinstance(obj, dict) else None
    kind = obj.get("kind") if isinstance(obj, dict) else None
    key = (str(api_version or ""), str(kind or ""))
    node = _ROOTS.get(key)
    if node is None:
        group = key[0].rsplit("/", 1)[0] if "/" in key[0] else ""
        schema = openapi.schema_for_kind(group, key[1]) if key[1] else None
        if schema is None:
            return _DEDUCED_ROOT  # not remembered: a client's made-up kinds must not grow the table
        node = _ROOTS[key] = _compile(schema)
    return node


# -- FieldsV1 encoding --------------------------------------------------------------------------


def _item_key(keys: tuple[str, ...], item: dict[str, Any]) -> str:
    vals = {k: item.get(k, _DEFAULT_KEY_VALUES.get(k)) for k in sorted(keys)}
    return "k:" + orjson.dumps({k: v for k, v in vals.items() if v is not None}).decode()


def _list_items(t: _T, value: list[Any]) -> dict[str, Any]:
    """Element path key → element, for a granular (list-map or set) list."""
    out: dict[str, Any] = {}
    keys = t.keys
    for item in value:
        if keys and isinstance(item, dict):
            out[_item_key(keys, item)] = item
        else:
            out["v:" + orjson.dumps(item, option=orjson.OPT_SORT_KEYS).decode()] = item
    return out


def field_set(obj: Any, t: _T | None = None) -> Tree:
    """The fields ``obj`` sets, as an applier owns them (structured-merge-diff ``ToFieldSet``).

    Scalars, atomic values and empty maps are leaves; list elements are members themselves
    (``.``) besides their fields; maps and structs are reached through their fields only.
    ``t``: the schema node of ``obj`` (default: its kind's, from ``apiVersion``/``kind``).
    """
    out: Tree = {}
    if not isinstance(obj, dict):
        return out
    if t is None:
        t = root_type(obj)
    for k, v in obj.items():
        fk = "f:" + str(k)
        c = t.child(k)
        if isinstance(v, dict) and v and not c.atomic:
            out[fk] = field_set(v, c)
        elif isinstance(v, list) and v and c.granular:
            node: Tree = {}
            elem = c.elem
            for ek, item in _list_items(c, v).items():
                sub = field_set(item, elem) if isinstance(item, dict) else {}
                node[ek] = {".": {}, **sub} if sub else {}
            out[fk] = node
        else:
            out[fk] = {}
    return out


def _changed(old: Any, new: Any, t: _T, present: bool, zero: bool) -> Tree | None:
    """Paths of ``new`` that ``old`` lacks or holds differently (Compare's Added ∪ Modified).

    ``present``: whether ``old`` holds this node at all (a node new in ``new`` is a member);
    ``zero``: whether the node exists in the Go zero object (a non-pointer struct, a list or map
    without omitempty), so a create does not make it a member itself.
    """
    if isinstance(new, dict) and new and not t.atomic:
        o = old if isinstance(old, dict) else {}
        out: Tree = {}
        for k, v in new.items():
            in_zero = k in t.zero
            in_old = k in o or (not present and in_zero and isinstance(v, dict | list))
            sub = _changed(o.get(k), v, t.child(k), in_old, in_zero)
            if sub is not None:
                out["f:" + str(k)] = sub
        if not present and not zero:
            out["."] = {}
        return out if out else None
    if isinstance(new, list) and new and t.granular:
        olds = _list_items(t, old) if isinstance(old, list) else {}
        out = {}
        elem = t.elem
        for ek, item in _list_items(t, new).items():
            sub = _changed(olds.get(ek), item, elem, ek in olds, False) if isinstance(item, dict) else None
            sub = sub or None
            if ek not in olds:
                out[ek] = {".": {}, **(sub or {})} if isinstance(item, dict) and item else {}
            elif sub:
                out[ek] = sub
        if out and not present and not zero:
            out["."] = {}
        return out if out else None
    if present and old == new:
        return None
    return {}


def _added(new: Any, t: _T, zero: bool) -> Tree:
    """``_changed`` of a new object against nothing (a create), built in canonical key order."""
    if isinstance(new, dict) and new and not t.atomic:
        out: Tree = {} if zero else {".": {}}
        for k in sorted(new):
            v = new[k]
            # Scalars (most fields) are leaves: no call for them.
            out["f:" + k] = _added(v, t.child(k), k in t.zero) if isinstance(v, dict | list) else {}
        return out
    if isinstance(new, list) and new and t.granular:
        items = _list_items(t, new)
        out = {} if zero else {".": {}}
        elem = t.elem
        for ek in sorted(items):
            item = items[ek]
            if isinstance(item, dict) and item:
                node = _added(item, elem, False)
                node.pop(".", None)
                out[ek] = {".": {}, **node}
            else:
                out[ek] = {}
        return out
    return {}


# Field sets of creates by shape: a controller's pods differ only in fields the manager never
# tracks (name, uid, timestamps), so the create hot path mostly pays a lookup and a copy.
_CREATED: dict[bytes, bytes] = {}
_CREATED_MAX = 512
_VOLATILE_META = frozenset(("name", "generateName", "uid", "creationTimestamp", "resourceVersion", "managedFields"))


def _created_set(new: dict[str, Any], status_only: bool | None) -> Tree:
    """``_added`` of a create, stripped, memoized on the object's tracked content."""
    md = new.get("metadata")
    shape = (
        {**new, "metadata": {k: v for k, v in md.items() if k not in _VOLATILE_META}} if isinstance(md, dict) else new
    )
    try:
        key = orjson.dumps([status_only, shape])
    except TypeError:  # not JSON (cannot come from a request): no memo
        return _strip(_added(new, root_type(new), False), status_only)
    hit = _CREATED.get(key)
    if hit is not None:
        tree: Tree = orjson.loads(hit)  # a copy: callers may hold and change what they get
        return tree
    created = _strip(_added(new, root_type(new), False), status_only)
    if len(_CREATED) >= _CREATED_MAX:
        _CREATED.clear()
    _CREATED[key] = orjson.dumps(created)
    return created


def _removed(old: Any, new: Any, t: _T) -> Tree:
    """Paths ``old`` holds that ``new`` lacks (Compare's Removed)."""
    out: Tree = {}
    if isinstance(old, dict) and isinstance(new, dict) and not t.atomic:
        for k, v in old.items():
            if k not in new:
                out["f:" + str(k)] = {}
            else:
                sub = _removed(v, new[k], t.child(k))
                if sub:
                    out["f:" + str(k)] = sub
    elif isinstance(old, list) and isinstance(new, list) and old and t.granular:
        news = _list_items(t, new)
        elem = t.elem
        for ek, item in _list_items(t, old).items():
            if ek not in news:
                out[ek] = {}
            else:
                sub = _removed(item, news[ek], elem)
                if sub:
                    out[ek] = sub
    return out


def encode(entries: Iterable[Entry]) -> list[dict[str, Any]]:
    """``metadata.managedFields`` in Kubernetes' order (Apply before Update, then oldest first)."""
    ordered = sorted(entries, key=lambda e: (e.operation, e.time, e.manager, e.api_version, e.subresource))
    return [e.to_dict() for e in ordered if e.fields]


_KIND_ORDER = {".": 0, "f:": 1, "k:": 2, "v:": 3, "i:": 4}


def canonical(t: Tree) -> Tree:
    """``t`` with its keys in structured-merge-diff's serialization order (``.`` first, then fields)."""
    return {k: canonical(t[k]) for k in sorted(t, key=lambda k: (_KIND_ORDER.get(k[:2], 0), k))}


def _valid_tree(t: Any, depth: int = 0) -> bool:
    if not isinstance(t, dict) or depth > 64:
        return False
    for k, v in t.items():
        if k == ".":
            if v != {}:
                return False
        elif not (isinstance(k, str) and k[:2] in ("f:", "k:", "v:", "i:")) or not _valid_tree(v, depth + 1):
            return False
    return True


def decode(raw: Any) -> list[Entry]:
    """Entries of a ``metadata.managedFields`` value; ``ValueError`` naming what is wrong."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError("metadata.managedFields must be a list")
    out: list[Entry] = []
    for i, e in enumerate(raw):
        if not isinstance(e, dict):
            raise ValueError(f"metadata.managedFields[{i}] must be an object")
        op = e.get("operation")
        if op not in ("Apply", "Update"):
            raise ValueError(f'metadata.managedFields[{i}].operation: Unsupported value: "{op}"')
        if e.get("fieldsType", "FieldsV1") != "FieldsV1":
            raise ValueError(f'metadata.managedFields[{i}].fieldsType: Unsupported value: "{e.get("fieldsType")}"')
        fields = e.get("fieldsV1") or {}
        if not _valid_tree(fields):
            raise ValueError(f"metadata.managedFields[{i}].fieldsV1: invalid field set")
        out.append(
            Entry(
                str(e.get("manager") or ""),
                op,
                str(e.get("apiVersion") or ""),
                str(e.get("time") or ""),
                fields,
                str(e.get("subresource") or ""),
            )
        )
    return out


# -- set operations -----------------------------------------------------------------------------


def _is_leaf(t: Tree) -> bool:
    return not t


def union(a: Tree, b: Tree) -> Tree:
    out = dict(a)
    for k, v in b.items():
        if k not in out:
            out[k] = v
        elif k == ".":
            continue
        else:
            x = out[k]
            if _is_leaf(x) or _is_leaf(v):
                # A leaf and a node with children: the node is a member and keeps its children.
                merged = union(x, v)
                out[k] = {".": {}, **merged} if merged else {}
            else:
                out[k] = union(x, v)
    return out


def _member(t: Tree) -> bool:
    return not t or "." in t


def _children(t: Tree) -> Tree:
    return {k: v for k, v in t.items() if k != "."}


def _normal(member: bool, children: Tree) -> Tree | None:
    if not children:
        return {} if member else None
    return {".": {}, **children} if member else children


def difference(a: Tree, b: Tree) -> Tree:
    """Paths of ``a`` not in ``b``."""
    out: Tree = {}
    for k, v in a.items():
        if k == ".":
            continue
        if k not in b:
            out[k] = v
            continue
        w = b[k]
        member = _member(v) and not _member(w)
        node = _normal(member, difference(_children(v), _children(w)))
        if node is not None:
            out[k] = node
    return out


def intersection(a: Tree, b: Tree) -> Tree:
    out: Tree = {}
    for k, v in a.items():
        if k == "." or k not in b:
            continue
        w = b[k]
        node = _normal(_member(v) and _member(w), intersection(_children(v), _children(w)))
        if node is not None:
            out[k] = node
    return out


def _format(key: str) -> str:
    kind, rest = key[:2], key[2:]
    if kind == "f:":
        return "." + rest
    if kind == "k:":
        fields = json.loads(rest)
        return "[" + ",".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in fields.items()) + "]"
    if kind == "v:":
        return f"[={rest}]"
    return f"[{rest}]"


def path_strings(t: Tree, prefix: str = "") -> list[str]:
    """Members of ``t`` as structured-merge-diff prints paths (``.spec.containers[name="a"].image``)."""
    out: list[str] = []
    for k in sorted(x for x in t if x != "."):
        p = prefix + _format(k)
        v = t[k]
        if _member(v):
            out.append(p)
        out.extend(path_strings(_children(v), p))
    return out


def conflict_message(conflicts: list[tuple[str, str]]) -> str:
    """apiserver managedfields/internal/conflict.go getConflictMessage."""
    if len(conflicts) == 1:
        return f"Apply failed with 1 conflict: conflict with {conflicts[0][0]}: {conflicts[0][1]}"
    by: dict[str, list[str]] = {}
    for m, p in conflicts:
        by.setdefault(m, []).append(p)
    lines: list[str] = []
    for m in sorted(by):
        lines.append(f"conflicts with {m}:")
        lines.extend(f"- {p}" for p in by[m])
    return f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)


# -- tracked fields -----------------------------------------------------------------------------


def _strip(t: Tree, status_only: bool | None) -> Tree:
    """Drop fields the manager never tracks; ``status_only``: True for status writes, False for main
    writes of a resource with a status subresource (its status is reset), None otherwise."""
    out = {k: v for k, v in t.items() if k not in ("f:apiVersion", "f:kind", ".")}
    md = out.get("f:metadata")
    if md is not None:
        md = {k: v for k, v in md.items() if k != "." and k[2:] not in _STRIPPED_META}
        if md:
            out["f:metadata"] = md
        else:
            out.pop("f:metadata")
    if status_only is True:
        return {"f:status": out["f:status"]} if "f:status" in out else {}
    if status_only is False:
        out.pop("f:status", None)
    return out


_clock: list[Any] = [-1, ""]  # (second, its RFC 3339 form): formatting once a second is enough


def now() -> str:
    """The time of an entry, at second resolution as metav1.Time."""
    sec = int(time.time())
    if _clock[0] != sec:
        _clock[1] = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        _clock[0] = sec
    return str(_clock[1])


def manager_from_user_agent(user_agent: str) -> str:
    """apiserver handlers/rest.go prefixFromUserAgent: the part before the first ``/``."""
    return user_agent.split("/", 1)[0][:128]


# -- operations ---------------------------------------------------------------------------------


def _cap(entries: list[Entry], api_version: str) -> list[Entry]:
    """Merge the oldest Update entries into ``ancient-changes`` beyond ``MAX_UPDATE_MANAGERS``."""
    updates = sorted((e for e in entries if e.operation == "Update"), key=lambda e: e.time)
    if len(updates) <= MAX_UPDATE_MANAGERS:
        return entries
    excess = updates[: len(updates) - MAX_UPDATE_MANAGERS + 1]
    gone = {id(e) for e in excess}
    ancient = Entry(ANCIENT, "Update", api_version, excess[-1].time)
    for e in excess:
        ancient.fields = union(ancient.fields, e.fields)
    kept = [e for e in entries if id(e) not in gone and e.ident() != ancient.ident()]
    for e in entries:
        if e.ident() == ancient.ident() and id(e) not in gone:
            ancient.fields = union(ancient.fields, e.fields)
    return [*kept, ancient]


def record_update(
    entries: list[Entry],
    old: dict[str, Any] | None,
    new: dict[str, Any],
    *,
    manager: str,
    api_version: str,
    subresource: str = "",
    status_only: bool | None = None,
) -> list[Entry]:
    """The entries after an Update (create/update/patch) by ``manager`` turned ``old`` into ``new``.

    The writer owns what it added or changed (taking it from others, as a forced update); fields it
    removed leave every set (merge/update.go Updater.update with force).
    """
    if old is None and not entries:
        created = _created_set(new, status_only)
        if not created:
            return []
        return [Entry(manager, "Update", api_version, now(), created, subresource, ordered=True)]
    root = root_type(new)
    changed = _strip(_changed(old or {}, new, root, old is not None, False) or {}, status_only)
    removed = _strip(_removed(old, new, root), status_only) if old is not None else {}
    taken = union(changed, removed)
    out: list[Entry] = []
    mine: Entry | None = None
    ident = (manager, "Update", api_version, subresource)
    for e in entries:
        if e.ident() == ident:
            stamp = now() if changed else e.time
            mine = Entry(e.manager, e.operation, e.api_version, stamp, union(e.fields, changed), subresource)
            out.append(mine)
            continue
        fields = difference(e.fields, taken) if taken else e.fields
        if fields:
            out.append(Entry(e.manager, e.operation, e.api_version, e.time, fields, e.subresource))
    if mine is None and changed:
        out.append(Entry(manager, "Update", api_version, now(), changed, subresource))
    return _cap([e for e in out if e.fields], api_version)


def _merge(live: Any, config: Any, t: _T) -> Any:
    """The applied configuration merged onto the live value (maps and list-maps granular)."""
    if isinstance(live, dict) and isinstance(config, dict) and not t.atomic:
        out = dict(live)
        for k, v in config.items():
            out[k] = _merge(live.get(k), v, t.child(k))
        return out
    if isinstance(live, list) and isinstance(config, list) and config and t.granular:
        lives = _list_items(t, live)
        merged = dict(lives)
        elem = t.elem
        for ek, item in _list_items(t, config).items():
            merged[ek] = _merge(lives.get(ek), item, elem)
        # Live order first, then new elements in the order the configuration gives them.
        return list(merged.values())
    return copy.deepcopy(config)


def _prune(obj: Any, drop: Tree, keep: Tree, t: _T) -> Any:
    """``obj`` without the members of ``drop``, except what ``keep`` (fields still owned) holds
    beneath them (merge/update.go prune + addBackOwnedItems); maps emptied by pruning go too."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            fk = "f:" + str(k)
            d = drop.get(fk)
            kept = keep.get(fk)
            if d is None:
                out[k] = v
            elif _member(d) and not kept:
                continue
            else:
                pv = _prune(v, _children(d), kept or {}, t.child(k))
                if pv == {} and v != {}:
                    continue
                out[k] = pv
        return out
    if isinstance(obj, list) and t.granular:
        items = _list_items(t, obj)
        result = []
        elem = t.elem
        for ek, item in items.items():
            d = drop.get(ek)
            kept = keep.get(ek)
            if d is None:
                result.append(item)
            elif not _member(d) or kept:
                result.append(_prune(item, _children(d), kept or {}, elem))
        return result
    return obj


def apply(
    entries: list[Entry],
    live: dict[str, Any] | None,
    config: dict[str, Any],
    *,
    manager: str,
    api_version: str,
    force: bool,
    status_only: bool | None = None,
) -> tuple[dict[str, Any], list[Entry]]:
    """Server-side apply of ``config`` by ``manager``: the new object and entries.

    merge/update.go Updater.Apply: merge onto live; the applier now owns exactly the fields of
    its configuration; fields it owned before and no longer applies are removed unless someone
    else owns them; changed fields owned by others are conflicts (``ApplyConflict``) unless
    ``force``, which takes them over.
    """
    live_obj = live or {}
    root = root_type(config)
    merged = _merge(live_obj, config, root)
    new_set = _strip(field_set(config, root), status_only)
    ident = (manager, "Apply", "", "")
    previous = next((e for e in entries if e.ident() == ident), None)
    others: Tree = {}
    for e in entries:
        if e.ident() != ident:
            others = union(others, e.fields)
    if previous is not None:
        stale = difference(difference(previous.fields, new_set), others)
        if stale:
            merged = _prune(merged, stale, union(new_set, others), root)
    changed = _strip(_changed(live_obj, merged, root, live is not None, False) or {}, status_only)
    contested = intersection(new_set, changed)
    conflicts: list[tuple[str, str]] = []
    for e in entries:
        if e.ident() != ident:
            clash = intersection(e.fields, contested)
            conflicts.extend((e.printed(), p) for p in path_strings(clash))
    if conflicts and not force:
        raise ApplyConflict(conflicts)
    removed = _strip(_removed(live_obj, merged, root), status_only) if live is not None else {}
    # Forced: the applier takes the changed fields; equal values stay shared with their owners.
    taken = union(contested, removed) if force else removed
    out: list[Entry] = []
    for e in entries:
        if e.ident() == ident:
            continue
        fields = difference(e.fields, taken) if taken else e.fields
        if fields:
            out.append(Entry(e.manager, e.operation, e.api_version, e.time, fields, e.subresource))
    out.insert(0, Entry(manager, "Apply", api_version, now(), new_set))
    return merged, [e for e in out if e.fields]
