"""The admission chain: what happens to an object between decoding and the store.

Role: in Kubernetes' order — mutating (defaulting, ClusterIP/NodePort allocation), then validating
(field validation, namespace lifecycle), then the ServiceAccount plugin for pods
(``serviceaccount_admission.py``: default ``serviceAccountName``, refuse a missing ServiceAccount,
mount the ``kube-api-access-*`` projected volume), then Priority (``priority_admission.py``) and
LimitRanger (``limitranger.py``) for pods, and ResourceQuota (``controlplane.api.quota``) for every
namespaced create. Each step either changes the object in place or raises an
``errors.ApiError`` (422 ``Invalid`` with one cause per field, 403/404 for namespace lifecycle), so a
refused request changes nothing: allocations made by an earlier step are released by ``abort``.

Invariants: admission never writes to the store itself; ``commit``/``abort`` bracket every
allocation so the allocators always mirror the stored Services.

Concurrency: called from the server's store threads, and for small creates from the event loop
(``inline_ok`` says when a create may run there: never when a step may wait on the store, as the
ServiceAccount lookup of a pod does); allocators lock internally.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, Protocol

import orjson

from controlplane.api import defaults, errors, registry, validation
from controlplane.api import quota as quota_admission
from controlplane.api.registry import Resource
from controlplane.apiserver import limitranger, priority_admission, serviceaccount_admission
from controlplane.apiserver.listers import AdmissionLister
from controlplane.storage.interface import Store

log = logging.getLogger(__name__)

# The authenticated (or impersonated) user of the request being served: set by the server when it
# authenticates, carried to store threads by ``RequestScope.run`` (contextvars), read by user-aware
# plugins (RBAC escalation prevention, NodeRestriction).
REQUEST_USER: ContextVar[Any] = ContextVar("kubelab_request_user", default=None)


class UserAdmission(Protocol):
    def admit(self, res: Resource, obj: dict[str, Any], old: dict[str, Any] | None, user: Any) -> None:
        """Raise an ``errors.ApiError`` to refuse the create (``old`` None) or update."""
        ...


# Kinds that may be created in a namespace that is being deleted (Kubernetes lets events through so
# controllers can report why deletion is slow).
_ALLOWED_IN_TERMINATING = {"events"}


class Admission:
    def __init__(self, store: Store, allocators: Any = None) -> None:
        self.store = store
        self.allocators = allocators
        self._ns_lookup: Callable[[str], dict[str, Any] | None] | None = None
        # The ServiceAccount admission plugin (on, as in kube-apiserver; --disable-admission-plugins).
        self.service_accounts = True
        self.plugins: list[UserAdmission] = []  # validating plugins that need the request's user
        # ResourceQuota, LimitRanger and Priority (policy_admission hooks; on, as in kube-apiserver).
        self.quota = quota_admission.Quota(self._list_objects)
        self.lister: AdmissionLister | None = None  # set once the API server has started it

    def set_namespace_lookup(self, fn: Callable[[str], dict[str, Any] | None]) -> None:
        self._ns_lookup = fn

    # -- steps ----------------------------------------------------------------------------

    def default(self, res: Resource, obj: dict[str, Any]) -> None:
        defaults.apply_defaults(res, obj)

    def validate(self, res: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        causes = validation.validate(res, obj, old)
        if causes:
            name = str((obj.get("metadata") or {}).get("name") or "")
            raise errors.invalid(res.kind, name, list(causes))

    def check_namespace(self, res: Resource, namespace: str) -> None:
        if not res.namespaced or self._ns_lookup is None:
            return
        ns = self._ns_lookup(namespace)
        if ns is None:
            raise errors.NotFound(f'namespaces "{namespace}" not found', kind="namespaces", name=namespace)
        terminating = (ns.get("metadata") or {}).get("deletionTimestamp") or (ns.get("status") or {}).get(
            "phase"
        ) == "Terminating"
        if terminating and res.plural not in _ALLOWED_IN_TERMINATING:
            raise errors.Forbidden(
                f'{res.plural} "{res.kind}" is forbidden: unable to create new content in namespace '
                f"{namespace} because it is being terminated",
                kind=res.plural,
                name=namespace,
            )

    def inline_ok(self, res: Resource) -> bool:
        """Whether a create of ``res`` may be admitted on the event loop (no step waits on the store)."""
        if res in (registry.PRIORITYCLASSES, registry.LIMITRANGES):
            return False  # their admission lists the store (read-your-writes around the lister)
        if res is registry.PODS:
            # ServiceAccount admission reads the store and may wait for the account to appear;
            # LimitRanger, Priority and quota read only the lister while it serves (a pod naming a
            # PriorityClass the lister lacks reads the store once: it is refused anyway, or the
            # class is new). So pods are admitted on the loop only without the ServiceAccount
            # plugin (issue 17: on etcd the thread pool's hand-offs cost more than admission).
            lister = self.lister
            return not self.service_accounts and lister is not None and lister.serving() and not self._quotas_exist()
        return not (res.namespaced and self._quotas_exist())

    def _quotas_exist(self) -> bool:
        # Creates are admitted on the event loop, skipping the quota step, only while no quota exists
        # anywhere (the common case), as the admission lister (listers.py, fed by the watch cache)
        # says; Kubernetes' own quota admission reads a lagging informer too. When the lister cannot
        # answer (not synced yet, or just after this server admitted a quota write) the create takes
        # the threaded path: the event loop never waits on the store (on etcd without quorum such a
        # read blocks for seconds, and with it every connection this server accepts).
        cached = self.lister.list(registry.RESOURCEQUOTAS.storage_prefix()) if self.lister is not None else None
        return True if cached is None else bool(cached)

    def _list_objects(self, res: Resource, namespace: str) -> list[dict[str, Any]]:
        cached = self.lister.list(res.storage_prefix(namespace)) if self.lister is not None else None
        if cached is not None:  # an informer-like cache (listers.py): no store round trip
            return cached
        kvs, _ = self.store.list(res.storage_prefix(namespace))
        return [orjson.loads(kv.value) for kv in kvs]

    def admit_policy_mutating(self, res: Resource, obj: dict[str, Any]) -> None:
        """Priority and LimitRanger defaulting of a pod being created."""
        if res is registry.LIMITRANGES:
            limitranger.default_limit_range(obj)
        if res is registry.PRIORITYCLASSES:
            self._one_global_default(obj)
        if res is not registry.PODS:
            return
        reason = priority_admission.admit_pod(obj, self._priority_class, self._priority_classes)
        if reason is not None:
            raise quota_admission.forbidden(res, obj, reason)
        ns = str(obj["metadata"].get("namespace") or "")
        limit_ranges = self._list_objects(registry.LIMITRANGES, ns) if ns else []
        if limit_ranges:
            limitranger.default_pod(obj, limit_ranges)
            reason = limitranger.validate_pod(obj, limit_ranges)
            if reason is not None:
                raise quota_admission.forbidden(res, obj, reason)

    def _one_global_default(self, pc: dict[str, Any]) -> None:
        # admitPriorityClass: at most one class may be the global default
        if pc.get("globalDefault") is not True:
            return
        name = (pc.get("metadata") or {}).get("name")
        for other in self._priority_classes():
            other_name = (other.get("metadata") or {}).get("name")
            if other.get("globalDefault") is True and other_name != name:
                raise quota_admission.forbidden(
                    registry.PRIORITYCLASSES,
                    pc,
                    f"PriorityClass {other_name} is already marked as default. Only one default can exist",
                )

    def _priority_class(self, name: str) -> dict[str, Any] | None:
        cached = self.lister.list(registry.PRIORITYCLASSES.storage_key(name)) if self.lister is not None else None
        for pc in cached or ():
            if (pc.get("metadata") or {}).get("name") == name:
                return pc  # Kubernetes' Priority plugin reads its lister too
        kv = self.store.get(registry.PRIORITYCLASSES.storage_key(name))
        return orjson.loads(kv.value) if kv is not None else None

    def _priority_classes(self) -> list[dict[str, Any]]:
        cached = self.lister.list(registry.PRIORITYCLASSES.storage_prefix()) if self.lister is not None else None
        if cached is not None:
            return cached
        kvs, _ = self.store.list(registry.PRIORITYCLASSES.storage_prefix())
        return [orjson.loads(kv.value) for kv in kvs]

    def admit_service_account(self, res: Resource, obj: dict[str, Any]) -> None:
        if res is not registry.PODS:
            return
        if self.service_accounts:
            serviceaccount_admission.admit_pod(obj, self._service_account)
        else:
            serviceaccount_admission.mirror_deprecated_field(obj)

    def _service_account(self, namespace: str, name: str) -> dict[str, Any] | None:
        kv = self.store.get(registry.SERVICEACCOUNTS.storage_key(name, namespace))
        return orjson.loads(kv.value) if kv is not None else None

    # -- the chain --------------------------------------------------------------------------

    def admit_create(self, res: Resource, obj: dict[str, Any]) -> Callable[[bool], None]:
        """Run the chain for a create; returns ``finish(committed)`` to release on failure."""
        if self.lister is not None and self.lister.tracks(res):
            self.lister.touched()  # read-your-writes: the store, until the watch has delivered it
        self.default(res, obj)
        finish = self._allocate(res, obj, None)
        try:
            self.validate(res, obj, None)
            self.check_namespace(res, str(obj["metadata"].get("namespace") or ""))
            self.admit_service_account(res, obj)
            self.admit_policy_mutating(res, obj)
            self._plugins(res, obj, None)
            if res is registry.PODS or (res.namespaced and self._quotas_exist()):
                self.quota.admit_create(res, obj)
        except BaseException:
            finish(False)
            raise
        return finish

    def admit_update(self, res: Resource, obj: dict[str, Any], old: dict[str, Any]) -> Callable[[bool], None]:
        if self.lister is not None and self.lister.tracks(res):
            self.lister.touched()
        self.default(res, obj)
        if res is registry.PODS:
            serviceaccount_admission.mirror_deprecated_field(obj)
            # priority is set once, by Priority admission at create; an update omitting it keeps it
            spec, old_spec = obj.get("spec"), old.get("spec") or {}
            if isinstance(spec, dict):
                for key in ("priority", "preemptionPolicy"):
                    if key in old_spec:
                        spec.setdefault(key, old_spec[key])
        finish = self._allocate(res, obj, old)
        try:
            self.validate(res, obj, old)
            self._plugins(res, obj, old)
            if res is registry.PRIORITYCLASSES:
                self._one_global_default(obj)
            if res in (registry.PODS, registry.SERVICES) and self._quotas_exist():
                self.quota.admit_update(res, obj, old)  # charged by what the update adds
        except BaseException:
            finish(False)
            raise
        return finish

    def _plugins(self, res: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
        if self.plugins:
            user = REQUEST_USER.get()
            for plugin in self.plugins:
                plugin.admit(res, obj, old, user)

    def deleted(self, res: Resource, obj: dict[str, Any]) -> None:
        if self.allocators is not None and res is registry.SERVICES:
            self.allocators.release_service(obj)

    def _allocate(self, res: Resource, obj: dict[str, Any], old: dict[str, Any] | None) -> Callable[[bool], None]:
        if self.allocators is None or res is not registry.SERVICES:
            return _noop
        result: Callable[[bool], None] = self.allocators.allocate_service(obj, old)
        return result


def _noop(committed: bool) -> None:
    return None
