"""Generic resource operations: get, list, create, update, patch, delete for every registry kind.

Role: kube-apiserver's generic registry (``staging/.../registry/generic/registry/store.go``) in
small: it maps API verbs onto the revisioned ``Store`` with Kubernetes' object semantics — uid,
creationTimestamp, generateName, generation bumped on spec change, resourceVersion as optimistic
concurrency, status split from the main resource, finalizers and deletionTimestamp, graceful pod
deletion — and runs the admission chain in between. What the server decides about an object
(the per-kind strategy: PrepareForCreate, PrepareForUpdate, graceful deletion) is in ``strategy.py``;
this module does the store reads and writes around it.

Invariants:
- ``metadata.resourceVersion`` is always ``str(mod_revision)`` of what the store holds; whatever a
  client sends there is only a precondition.
- A write that changes nothing is not written (same object and resourceVersion come back), so
  level-triggered clients that re-apply the same state do not cause watch events.
- Main-resource writes keep the stored ``status``; status writes keep everything but ``status``.
- An object with ``deletionTimestamp`` is removed as soon as its finalizers are empty (and, for
  pods, once the node confirms with a zero grace period).

Concurrency: every method is synchronous and runs on one of the server's store threads; the store
arbitrates concurrent writers (compare-and-swap on ``mod_revision``), and patches retry on conflict.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable
from typing import Any

import orjson

from controlplane.api import errors, registry, structural
from controlplane.api.registry import Resource
from controlplane.apiserver import fieldmanager
from controlplane.apiserver.admission import Admission
from controlplane.apiserver.strategy import (
    check_body,
    clone,
    finalizers_done,
    generate_name,
    mark_for_deletion,
    merge_server_fields,
    prepare_for_create,
    set_generation,
    spec_of,
    strict_check,
)
from controlplane.storage.interface import ConflictError, KeyExistsError, KeyNotFoundError, KeyValue, Store

log = logging.getLogger(__name__)

Obj = dict[str, Any]
ObjList = list[Obj]  # (``ResourceOps.list`` shadows the builtin inside the class body)

_PREFIX = b'{"apiVersion":"'
_META = b',"metadata":{'
_META_LEN = len(_META)

_PATCH_RETRIES = 5


def with_resource_version(value: bytes, revision: int) -> bytes | None:
    """A stored value with ``metadata.resourceVersion`` spliced in, or None if it is not in ``encode``'s form.

    Values written by ``ResourceOps.encode`` start ``{"apiVersion":…,"kind":…,"metadata":{`` with a
    non-empty metadata, so the first ``,"metadata":{`` is the object's own and the resourceVersion
    can go in front of its first key: the JSON of the object as served, without decoding it.
    """
    at = value.find(_META, 0, 256)
    if at > 0 and value.startswith(_PREFIX) and value[at + _META_LEN] != 125:  # 125: "}"
        at += _META_LEN
        return b'%s"resourceVersion":"%d",%s' % (value[:at], revision, value[at:])
    return None


def qualified(res: Resource) -> str:
    """``deployments.apps`` / ``pods``: how Kubernetes names a resource in error messages."""
    return f"{res.plural}.{res.group}" if res.group else res.plural


def not_found(res: Resource, name: str) -> errors.NotFound:
    err = errors.not_found(qualified(res), name, res.group)
    err.kind = res.plural
    return err


def already_exists(res: Resource, name: str) -> errors.AlreadyExists:
    err = errors.already_exists(qualified(res), name, res.group)
    err.kind = res.plural
    return err


def conflict(res: Resource, name: str) -> errors.Conflict:
    err = errors.conflict(qualified(res), name, res.group)
    err.kind = res.plural
    return err


class ResourceOps:
    """The generic registry over one ``Store``."""

    def __init__(self, store: Store, admission: Admission) -> None:
        self.store = store
        self.admission = admission
        admission.set_namespace_lookup(self._namespace)
        # Called after every successful write of a Namespace (write-through for the server's
        # namespace cache, so this server never admits a create it has just made impossible).
        self.on_namespace_change: Callable[[Obj, bool], None] | None = None

    def _changed(self, res: Resource, obj: Obj, deleted: bool = False) -> None:
        if res is registry.NAMESPACES and self.on_namespace_change is not None:
            self.on_namespace_change(obj, deleted)

    # -- encoding ----------------------------------------------------------------------------

    @staticmethod
    def decode(kv: KeyValue) -> Obj:
        obj: Obj = orjson.loads(kv.value)
        obj.setdefault("metadata", {})["resourceVersion"] = str(kv.mod_revision)
        return obj

    @staticmethod
    def encode(obj: Obj) -> bytes:
        """The stored form: canonical key order (apiVersion, kind, metadata, …), no resourceVersion.

        The order lets ``raw`` splice the resourceVersion into the stored bytes without decoding
        them; the store's revision is the truth, so a stale copy of it is never persisted.
        """
        md = obj.get("metadata")
        if isinstance(md, dict) and "resourceVersion" in md:
            md = {k: v for k, v in md.items() if k != "resourceVersion"}
        ordered: Obj = {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "metadata": md}
        ordered.update((k, v) for k, v in obj.items() if k not in ordered)
        return orjson.dumps(ordered)

    @classmethod
    def raw(cls, kv: KeyValue) -> bytes:
        """The object's JSON with ``metadata.resourceVersion`` set, without decoding it (hot path)."""
        spliced = with_resource_version(kv.value, kv.mod_revision)
        return spliced if spliced is not None else orjson.dumps(cls.decode(kv))

    def list_raw(self, res: Resource, namespace: str | None) -> tuple[list[bytes], int]:
        kvs, rev = self.store.list(res.storage_prefix(namespace))
        out: list[bytes] = []
        append = out.append
        for kv in kvs:  # ``raw`` inlined: this loop runs 10,000 times for a big list
            value = kv.value
            at = value.find(_META, 0, 256)
            if at > 0 and value[at + _META_LEN] != 125 and value.startswith(_PREFIX):
                at += _META_LEN
                append(b'%s"resourceVersion":"%d",%s' % (value[:at], kv.mod_revision, value[at:]))
            else:
                append(self.raw(kv))
        return out, rev

    def _namespace(self, name: str) -> Obj | None:
        kv = self.store.get(registry.NAMESPACES.storage_key(name))
        return self.decode(kv) if kv else None

    # -- reads -------------------------------------------------------------------------------

    def get_kv(self, res: Resource, namespace: str | None, name: str) -> KeyValue:
        kv = self.store.get(res.storage_key(name, namespace))
        if kv is None:
            raise not_found(res, name)
        return kv

    def get(self, res: Resource, namespace: str | None, name: str) -> Obj:
        return self.decode(self.get_kv(res, namespace, name))

    def list(
        self, res: Resource, namespace: str | None, match: Callable[[Obj], bool] | None = None
    ) -> tuple[list[Obj], int]:
        kvs, rev = self.store.list(res.storage_prefix(namespace))
        items = []
        for kv in kvs:
            obj = self.decode(kv)
            if match is None or match(obj):
                items.append(obj)
        return items, rev

    def list_page(
        self,
        res: Resource,
        namespace: str | None,
        match: Callable[[Obj], bool] | None,
        *,
        start_after: str,
        limit: int,
    ) -> tuple[ObjList, int, str, int | None]:
        """One page: objects with key > ``start_after``, at most ``limit``.

        Returns (items, revision, last key if more follow else "", remaining count or None). Pages
        are read from the current state (the store cannot list at an old revision), so every key
        appears at most once across pages, possibly in a newer version than the first page's.
        """
        kvs, rev = self.store.list(res.storage_prefix(namespace))
        start = bisect.bisect_right(kvs, start_after, key=lambda kv: kv.key) if start_after else 0
        items: ObjList = []
        for j in range(start, len(kvs)):
            obj = self.decode(kvs[j])
            if match is not None and not match(obj):
                continue
            items.append(obj)
            if limit and len(items) >= limit and j + 1 < len(kvs):
                return items, rev, kvs[j].key, (None if match is not None else len(kvs) - j - 1)
        return items, rev, "", None

    # -- create ------------------------------------------------------------------------------

    def create(
        self,
        res: Resource,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
        strict: bool = False,
        manager: str | None = None,
        applied: ObjList | None = None,
    ) -> Obj:
        pending = self.begin_create(
            res, namespace, body, dry_run=dry_run, strict=strict, manager=manager, applied=applied
        )
        if pending.value is None:
            return pending.obj  # dry run
        while True:
            try:
                rev = self.store.create(pending.key, pending.value)
            except KeyExistsError:
                pending.collided()  # another name, or AlreadyExists
                continue
            except BaseException:
                pending.abort()
                raise
            return pending.committed(rev)

    def begin_create(
        self,
        res: Resource,
        namespace: str | None,
        body: Any,
        *,
        dry_run: bool = False,
        strict: bool = False,
        manager: str | None = None,
        applied: ObjList | None = None,
    ) -> PendingCreate:
        """Everything of a create but the store write: checks, defaulting, admission, encoding.

        The caller writes ``(key, value)`` with ``store.create`` (or ``create_nowait``) and then
        calls ``committed(rev)``, ``collided()`` on ``KeyExistsError`` (then writes again), or
        ``abort()`` on any other failure. For a dry run ``value`` is None and ``obj`` is the answer.
        ``manager`` records an Update entry for the object as admitted (defaults included);
        ``applied``: the managedFields of a create by server-side apply.
        """
        if strict and isinstance(body, dict):
            strict_check(res, body)
        obj = prepare_for_create(res, namespace, body)
        finish = self.admission.admit_create(res, obj)
        if applied:
            obj["metadata"]["managedFields"] = applied
        elif manager:
            fieldmanager.record(res, None, obj, obj, manager=manager, subresource=None)
        if dry_run:
            finish(False)
            return PendingCreate(self, res, obj, finish, generated=False, dry_run=True)
        generated = isinstance(body, dict) and not (body.get("metadata") or {}).get("name")
        return PendingCreate(self, res, obj, finish, generated=generated)

    # -- update --------------------------------------------------------------------------------

    def update(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        strict: bool = False,
        manager: str | None = None,
    ) -> Obj:
        if strict and isinstance(body, dict):
            strict_check(res, body)
        obj = check_body(res, body)
        md = obj["metadata"]
        if md.get("name") and md["name"] != name:
            raise errors.BadRequest(
                f"the name of the object ({md['name']}) does not match the name on the URL ({name})"
            )
        if res.namespaced and md.get("namespace") and md["namespace"] != namespace:
            raise errors.BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        kv = self.get_kv(res, namespace, name)
        want_rv = md.get("resourceVersion")
        if want_rv not in (None, "") and str(want_rv) != str(kv.mod_revision):
            raise conflict(res, name)
        return self._write(res, kv, obj, subresource=subresource, dry_run=dry_run, manager=manager)

    def _write(
        self,
        res: Resource,
        kv: KeyValue,
        new: Obj,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        manager: str | None = None,
        applied: bool = False,
    ) -> Obj:
        """Store ``new`` over the stored ``kv`` (compare-and-swap on its revision).

        Raises ``errors.Conflict`` if the store moved on meanwhile (callers may retry).
        ``applied``: ``new`` carries the managedFields a server-side apply computed.
        """
        old = self.decode(kv)
        obj = merge_server_fields(res, old, new, subresource)
        if applied:
            applied_fields = new["metadata"].get("managedFields")
            if applied_fields:
                obj["metadata"]["managedFields"] = applied_fields
        else:
            fieldmanager.record(res, old, new, obj, manager=manager, subresource=subresource)
        name = old["metadata"]["name"]
        finish = self.admission.admit_update(res, obj, old) if subresource is None else _noop
        if subresource is None:
            # Kubernetes compares specs after defaulting: re-applying an unchanged manifest (whose
            # patch drops defaulted fields such as a port's protocol) must not bump generation.
            set_generation(res, obj, old)
        if _same(obj, old):
            finish(False)
            return old
        om = obj["metadata"]
        if om.get("deletionTimestamp") and not om.get("finalizers") and finalizers_done(res, obj):
            # The last finalizer is gone: the deletion that was waiting for it happens now.
            finish(False)
            if dry_run:
                return obj
            return self._remove(res, kv, obj)
        if dry_run:
            finish(False)
            return obj
        try:
            rev = self.store.update(kv.key, self.encode(obj), kv.mod_revision)
        except ConflictError:
            finish(False)
            raise conflict(res, name) from None
        except KeyNotFoundError:
            finish(False)
            raise not_found(res, name) from None
        except BaseException:
            finish(False)
            raise
        finish(True)
        om["resourceVersion"] = str(rev)
        self._changed(res, obj)
        return obj

    def guaranteed_update(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        try_update: Callable[[Obj], Obj],
        *,
        dry_run: bool = False,
    ) -> Obj:
        """Read, modify with ``try_update``, write at the read revision; again on conflict.

        The storage's ``GuaranteedUpdate`` (k8s.io/apiserver/pkg/storage/interface.go): for writes
        whose new state is computed from the current one and that bypass the strategy (no admission,
        no server-field merge), such as a pod's binding. ``try_update`` gets a fresh decoded copy
        each attempt and may raise to refuse (a 409, say). 404 when the object is (or goes) missing;
        409 after ``_PATCH_RETRIES`` conflicting attempts. A dry run writes nothing.
        """
        for _attempt in range(_PATCH_RETRIES):
            kv = self.get_kv(res, namespace, name)
            obj = try_update(self.decode(kv))
            if dry_run:
                return obj
            try:
                rev = self.store.update(kv.key, self.encode(obj), kv.mod_revision)
            except ConflictError:
                continue  # the object changed meanwhile (a status update): read it again
            except KeyNotFoundError:
                raise not_found(res, name) from None
            obj["metadata"]["resourceVersion"] = str(rev)
            self._changed(res, obj)
            return obj
        raise conflict(res, name)

    # -- patch ---------------------------------------------------------------------------------

    def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        body: bytes,
        content_type: str,
        *,
        subresource: str | None = None,
        dry_run: bool = False,
        strict: bool = False,
        manager: str | None = None,
        force: bool = False,
    ) -> tuple[Obj, bool]:
        """Returns (object, created). Server-side apply creates a missing object."""
        from controlplane.api import patch as patchlib

        ssa = patchlib.media_type(content_type) == patchlib.APPLY_PATCH and subresource is None
        config: Obj = {}
        if force and not ssa:
            fieldmanager.forbid_force()
        if ssa:
            config = patchlib.decode_apply(res, body)  # a malformed body is a 400 whatever the options
            manager = fieldmanager.require_manager(manager)
            structural.raise_for_patch(res, config, content_type, body)  # a type error before conflicts
            cmd = config.setdefault("metadata", {})
            if isinstance(cmd, dict):
                cmd.setdefault("name", name)

        for attempt in range(_PATCH_RETRIES):
            kv = self.store.get(res.storage_key(name, namespace))
            if kv is None:
                if ssa:
                    assert manager is not None
                    doc = fieldmanager.apply(res, None, clone(config), manager=manager, force=force)
                    applied = doc["metadata"].pop("managedFields", None)
                    try:
                        return self.create(res, namespace, doc, dry_run=dry_run, strict=strict, applied=applied), True
                    except errors.AlreadyExists:
                        continue
                raise not_found(res, name)
            old = self.decode(kv)
            if ssa:
                assert manager is not None
                new = fieldmanager.apply(res, clone(old), clone(config), manager=manager, force=force)
            else:
                new = patchlib.apply_patch(res, clone(old), body, content_type)
            if not isinstance(new, dict):
                raise errors.BadRequest("the patch must produce an object")
            if strict:
                strict_check(res, new)
            raw_md = new.get("metadata")
            new_md: Obj = raw_md if isinstance(raw_md, dict) else {}
            pinned_rv = str(new_md.get("resourceVersion") or "")
            if pinned_rv and pinned_rv != str(kv.mod_revision):
                raise conflict(res, name)
            for field in ("name", "namespace"):
                if new_md.get(field, old["metadata"].get(field)) != old["metadata"].get(field):
                    raise errors.BadRequest(f"metadata.{field} cannot be changed by a patch")
            structural.raise_for_patch(res, new, content_type, body)
            new = check_body(res, new)
            try:
                return self._write(
                    res, kv, new, subresource=subresource, dry_run=dry_run, manager=manager, applied=ssa
                ), False
            except errors.Conflict:
                if attempt == _PATCH_RETRIES - 1:
                    raise
        raise conflict(res, name)

    # -- delete --------------------------------------------------------------------------------

    def delete(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        options: Obj,
        *,
        dry_run: bool = False,
    ) -> Obj:
        """DELETE with ``DeleteOptions``; returns the object (gone, or marked for deletion)."""
        for _attempt in range(_PATCH_RETRIES):
            kv = self.get_kv(res, namespace, name)
            obj = self.decode(kv)
            md = obj["metadata"]
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != md.get("uid"):
                raise errors.Conflict(
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {md.get('uid')}",
                    kind=res.plural,
                    name=name,
                    group=res.group,
                )
            if pre.get("resourceVersion") and str(pre["resourceVersion"]) != md["resourceVersion"]:
                raise errors.Conflict(
                    f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                    f"ResourceVersion in object meta: {md['resourceVersion']}",
                    kind=res.plural,
                    name=name,
                    group=res.group,
                )
            marked = mark_for_deletion(res, obj, options)
            if dry_run:
                return marked if marked is not None else obj
            try:
                if marked is None:
                    return self._remove(res, kv, obj)
                if _same(marked, obj):
                    return obj
                rev = self.store.update(kv.key, self.encode(marked), kv.mod_revision)
                marked["metadata"]["resourceVersion"] = str(rev)
                self._changed(res, marked)
                return marked
            except errors.Conflict:
                continue
            except ConflictError:
                continue
            except KeyNotFoundError:
                raise not_found(res, name) from None
        raise conflict(res, name)

    def _remove(self, res: Resource, kv: KeyValue, obj: Obj) -> Obj:
        name = obj["metadata"]["name"]
        try:
            _deleted, rev = self.store.delete(kv.key, kv.mod_revision)
        except ConflictError:
            raise conflict(res, name) from None
        except KeyNotFoundError:
            raise not_found(res, name) from None
        self.admission.deleted(res, obj)
        obj["metadata"]["resourceVersion"] = str(rev)
        self._changed(res, obj, deleted=True)
        return obj

    def finalize_namespace(self, name: str, body: Any) -> Obj:
        """PUT namespaces/{name}/finalize: replace ``spec.finalizers``; remove the namespace when done."""
        res = registry.NAMESPACES
        new = check_body(res, body)
        for _ in range(_PATCH_RETRIES):
            kv = self.get_kv(res, None, name)
            old = self.decode(kv)
            obj = clone(old)
            obj["spec"] = dict(spec_of(obj))  # a stored non-object spec (older data) is replaced
            obj["spec"]["finalizers"] = list(spec_of(new).get("finalizers") or [])
            if not obj["spec"]["finalizers"]:
                obj["spec"].pop("finalizers")
            md = obj["metadata"]
            if md.get("deletionTimestamp") and not obj["spec"].get("finalizers") and not md.get("finalizers"):
                try:
                    return self._remove(res, kv, obj)
                except errors.Conflict:
                    continue
            try:
                rev = self.store.update(kv.key, self.encode(obj), kv.mod_revision)
            except ConflictError:
                continue
            md["resourceVersion"] = str(rev)
            self._changed(res, obj)
            return obj
        raise conflict(res, name)


class PendingCreate:
    """An admitted object waiting for its store write (see ``ResourceOps.begin_create``)."""

    __slots__ = ("_attempts", "_finish", "_generated", "_ops", "key", "obj", "res", "value")

    def __init__(
        self,
        ops: ResourceOps,
        res: Resource,
        obj: Obj,
        finish: Callable[[bool], None],
        *,
        generated: bool,
        dry_run: bool = False,
    ) -> None:
        self._ops = ops
        self.res = res
        self.obj = obj
        self._finish = finish
        self._generated = generated
        self._attempts = 0
        self.key = ""
        self.value: bytes | None = None
        if not dry_run:
            self._encode()

    def _encode(self) -> None:
        md = self.obj["metadata"]
        self.key = self.res.storage_key(md["name"], md.get("namespace"))
        self.value = ResourceOps.encode(self.obj)

    def collided(self) -> None:
        """The key exists: draw another generateName suffix (Kubernetes retries too), or 409."""
        self._attempts += 1
        md = self.obj["metadata"]
        if self._generated and self._attempts < 3:
            md["name"] = generate_name(str(md["generateName"]))
            self._encode()
            return
        self._finish(False)
        raise already_exists(self.res, md["name"])

    def abort(self) -> None:
        """The write failed: release what admission allocated."""
        self._finish(False)

    def committed(self, rev: int) -> Obj:
        """The write is durable at ``rev``: the created object, as the API answers it."""
        self._finish(True)
        self.obj["metadata"]["resourceVersion"] = str(rev)
        self._ops._changed(self.res, self.obj)
        return self.obj


def _noop(committed: bool) -> None:
    return None


def _same(a: Obj, b: Obj) -> bool:
    ma = {k: v for k, v in a.get("metadata", {}).items() if k != "resourceVersion"}
    mb = {k: v for k, v in b.get("metadata", {}).items() if k != "resourceVersion"}
    if ma != mb:
        return False
    return {k: v for k, v in a.items() if k != "metadata"} == {k: v for k, v in b.items() if k != "metadata"}
