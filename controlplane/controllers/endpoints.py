"""Endpoints and EndpointSlice controllers: which pods back each Service with a selector.

Role: Kubernetes' endpoints and endpointslice controllers, in one module because both derive
from the same pure function of (service, pods):

- ``compute_subsets`` → ``Endpoints.subsets``: ready pods in ``addresses``, not-ready ones in
  ``notReadyAddresses`` (all ready with ``publishNotReadyAddresses``), terminating pods left out;
  each address carries ``ip``, ``nodeName`` and ``targetRef``; pods with the same resolved ports share
  a subset. Target ports by number, or by name resolved *per pod* through its containers' port
  names (a pod without that port name is not an endpoint for that port).
- ``compute_slices`` → EndpointSlices (IPv4, ≤100 endpoints each) labelled
  ``kubernetes.io/service-name`` and ``endpointslice.kubernetes.io/managed-by:
  endpointslice-controller.k8s.io``, controller-owned by the Service; endpoint conditions
  ready/serving/terminating (terminating pods stay in slices with ready=false, as Kubernetes does).

Both stamp ``endpoints.kubernetes.io/last-change-trigger-time`` on every content change: the
earliest pod/service change not yet written (the pod's Ready transition time when it has one, else
when the controller saw the event). kube-proxy measures network-programming latency from it.

Services without a selector are left alone (their endpoints are someone else's), and so is
``default/kubernetes``, whose endpoints the API server maintains.

Concurrency: as every controller (base.py); the trigger-time map takes a lock.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from controlplane.api import errors
from controlplane.api.models import Pod, Service, ServicePort
from controlplane.api.registry import ENDPOINTS, ENDPOINTSLICES, PODS, SERVICES
from controlplane.client.controller import TemporaryError
from controlplane.controllers.base import NAMESPACE_INDEX, Controller, ControllerContext
from controlplane.controllers.util import (
    Obj,
    format_time,
    get_condition,
    is_deleting,
    key_of,
    labels_of,
    name_of,
    namespace_of,
    parse_time,
    split_key,
)

log = logging.getLogger(__name__)

TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = "endpointslice-controller.k8s.io"
HEADLESS_LABEL = "service.kubernetes.io/headless"
MAX_ENDPOINTS_PER_SLICE = 100
UNSEEN_TTL = 30.0

PortKey = tuple[tuple[str, int, str], ...]  # ((name, port, protocol), ...)


# ---------------------------------------------------------------------------------------------
# pure: which pods, which ports


def service_selector(svc: Service) -> dict[str, str] | None:
    return dict(svc.spec.selector) if svc.spec.selector else None


def selects(svc: Service, namespace: str, labels: Mapping[str, str]) -> bool:
    """Whether the service selects a pod with these labels in this namespace."""
    sel = svc.spec.selector
    if not sel or svc.metadata.namespace != namespace:
        return False
    return all(labels.get(k) == v for k, v in sel.items())


def is_managed(svc: Service) -> bool:
    if service_selector(svc) is None:
        return False
    return not (svc.metadata.namespace == "default" and svc.metadata.name == "kubernetes")


def resolve_target_port(svc_port: ServicePort, pod: Pod) -> int | None:
    """The pod's port number for a service port: a number, or a container port looked up by name."""
    target = svc_port.target_port or svc_port.port
    if isinstance(target, int):
        return target
    if target.isdigit():
        return int(target)
    for c in pod.spec.containers:
        for cp in c.ports:
            if cp.name == target and cp.protocol == svc_port.protocol:
                return cp.container_port
    return None


def pod_ports(svc: Service, pod: Pod) -> PortKey | None:
    """The (name, port, protocol) tuples this pod serves for the service; None: not an endpoint."""
    ports: list[tuple[str, int, str]] = []
    for sp in svc.spec.ports:
        n = resolve_target_port(sp, pod)
        if n is None:
            continue
        ports.append((sp.name, n, sp.protocol))
    if svc.spec.ports and not ports:
        return None
    return tuple(sorted(ports))


def pod_ip(pod: Pod) -> str:
    return pod.status.pod_ip or (pod.status.pod_ips[0].ip if pod.status.pod_ips else "")


def eligible(pod: Pod) -> bool:
    """An endpoint candidate: has an IP and has not finished."""
    return bool(pod_ip(pod)) and pod.status.phase not in ("Succeeded", "Failed")


def target_ref(pod: Pod) -> dict[str, str]:
    md = pod.metadata
    return {"kind": "Pod", "namespace": md.namespace, "name": md.name, "uid": md.uid}


def _hostname(svc: Service, pod: Pod) -> str:
    """A pod's DNS hostname under a headless service: ``spec.hostname`` when ``subdomain`` names it."""
    return pod.spec.hostname if pod.spec.hostname and pod.spec.subdomain == svc.metadata.name else ""


def _address(svc: Service, pod: Pod) -> dict[str, Any]:
    addr: dict[str, Any] = {"ip": pod_ip(pod)}
    if _hostname(svc, pod):
        addr["hostname"] = _hostname(svc, pod)
    if pod.spec.node_name:
        addr["nodeName"] = pod.spec.node_name
    addr["targetRef"] = target_ref(pod)
    return addr


def _candidates(svc: Service, pods: Sequence[Pod]) -> list[tuple[Pod, PortKey]]:
    out = []
    for pod in pods:
        if not selects(svc, pod.metadata.namespace, pod.metadata.labels) or not eligible(pod):
            continue
        ports = pod_ports(svc, pod)
        if ports is not None:
            out.append((pod, ports))
    return out


def compute_subsets(svc: Service, pods: Sequence[Pod]) -> list[dict[str, Any]]:
    """``Endpoints.subsets`` for a service: grouped by port set, addresses sorted by IP."""
    publish_not_ready = svc.spec.publish_not_ready_addresses
    groups: dict[PortKey, tuple[list[dict[str, Any]], list[dict[str, Any]]]] = {}
    for pod, ports in _candidates(svc, pods):
        if pod.metadata.deletion_timestamp and not publish_not_ready:
            continue
        ready, not_ready = groups.setdefault(ports, ([], []))
        (ready if publish_not_ready or pod.ready() else not_ready).append(_address(svc, pod))
    subsets: list[dict[str, Any]] = []
    for ports, (ready, not_ready) in sorted(groups.items()):
        subset: dict[str, Any] = {}
        if ready:
            subset["addresses"] = sorted(ready, key=lambda a: (a["ip"], a["targetRef"]["name"]))
        if not_ready:
            subset["notReadyAddresses"] = sorted(not_ready, key=lambda a: (a["ip"], a["targetRef"]["name"]))
        if ports:
            subset["ports"] = [_port_dict(p) for p in ports]
        subsets.append(subset)
    return subsets


def _port_dict(p: tuple[str, int, str]) -> dict[str, Any]:
    d: dict[str, Any] = {"port": p[1], "protocol": p[2]}
    if p[0]:
        d["name"] = p[0]
    return d


def compute_slice_contents(svc: Service, pods: Sequence[Pod]) -> list[tuple[PortKey, list[dict[str, Any]]]]:
    """Desired EndpointSlice contents: (ports, endpoints) chunks, ≤100 endpoints each, sorted."""
    publish_not_ready = svc.spec.publish_not_ready_addresses
    groups: dict[PortKey, list[dict[str, Any]]] = {}
    for pod, ports in _candidates(svc, pods):
        terminating = bool(pod.metadata.deletion_timestamp)
        serving = publish_not_ready or pod.ready()
        ep: dict[str, Any] = {
            "addresses": [pod_ip(pod)],
            "conditions": {"ready": serving and not terminating, "serving": serving, "terminating": terminating},
            "targetRef": target_ref(pod),
        }
        if pod.spec.node_name:
            ep["nodeName"] = pod.spec.node_name
        if _hostname(svc, pod):
            ep["hostname"] = _hostname(svc, pod)
        groups.setdefault(ports, []).append(ep)
    out: list[tuple[PortKey, list[dict[str, Any]]]] = []
    for ports, eps in sorted(groups.items()):
        eps.sort(key=lambda e: (e["addresses"][0], e["targetRef"]["name"]))
        for i in range(0, len(eps), MAX_ENDPOINTS_PER_SLICE):
            out.append((ports, eps[i : i + MAX_ENDPOINTS_PER_SLICE]))
    if not out:
        # Kubernetes keeps one empty "placeholder" slice so consumers see the service exists.
        out.append((pod_ports(svc, Pod()) or (), []))
    return out


def slice_ports(ports: PortKey) -> list[dict[str, Any]]:
    return [{"name": p[0], "port": p[1], "protocol": p[2]} for p in ports]


def pod_trigger_time(pod: Obj, now: datetime) -> datetime:
    """When this pod last changed in a way that matters to endpoints (its Ready transition)."""
    if is_deleting(pod):
        return now
    c = get_condition(pod, "Ready")
    t = parse_time(c.get("lastTransitionTime")) if c else None
    return t if t is not None and t <= now else now


def service_controller_ref(svc: Service) -> dict[str, Any]:
    """The ownerReference an EndpointSlice carries to its Service."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "name": svc.metadata.name,
        "uid": svc.metadata.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


# ---------------------------------------------------------------------------------------------
# controllers


class _ServicePodsController(Controller):
    """Shared wiring: services and pods → service keys; trigger-time tracking."""

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.svc_informer = ctx.informers.get(SERVICES)
        self.pod_informer = ctx.informers.get(PODS)
        # What is only read, typed (decoded once per change); the handlers get the wire dicts.
        self.services = self.svc_informer.view(Service.decode)
        self.pods = self.pod_informer.view(Pod.decode)
        self._trigger: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self.svc_informer.add_handler(
            on_add=self._svc_event, on_update=lambda _o, n: self._svc_event(n), on_delete=self._svc_event
        )
        self.pod_informer.add_handler(on_add=self._pod_event, on_update=self._pod_updated, on_delete=self._pod_event)

    def _note(self, key: str, t: datetime) -> None:
        with self._lock:
            cur = self._trigger.get(key)
            if cur is None or t < cur:
                self._trigger[key] = t

    def _svc_event(self, svc: Obj) -> None:
        self._note(key_of(svc), self.ctx.clock.now())
        self.enqueue(svc)

    def _pod_event(self, pod: Obj) -> None:
        now = self.ctx.clock.now()
        ns, labels = namespace_of(pod), labels_of(pod)
        for svc in self.services.by_index(NAMESPACE_INDEX, ns):
            if selects(svc, ns, labels):
                self._note(svc.metadata.key, pod_trigger_time(pod, now))
                self.queue.add(svc.metadata.key)

    def _pod_updated(self, old: Obj, new: Obj) -> None:
        if labels_of(old) != labels_of(new):
            self._pod_event(old)
        self._pod_event(new)

    def take_trigger(self, key: str) -> datetime:
        with self._lock:
            return self._trigger.get(key) or self.ctx.clock.now()

    def clear_trigger(self, key: str, upto: datetime) -> None:
        with self._lock:
            if self._trigger.get(key) is not None and self._trigger[key] <= upto:
                self._trigger.pop(key, None)

    def pods_in(self, ns: str) -> list[Pod]:
        return self.pods.by_index(NAMESPACE_INDEX, ns)


class EndpointsController(_ServicePodsController):
    name = "endpoints"
    workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.ep_informer = ctx.informers.get(ENDPOINTS)
        # An Endpoints object changed or deleted behind our back is re-converged.
        self.ep_informer.add_handler(on_update=lambda _o, n: self.enqueue(n), on_delete=self.enqueue)

    def sync(self, key: str) -> None:
        ns, name = split_key(key)
        svc = self.services.get(key)
        existing = self.ep_informer.get(key)
        if svc is None:
            if existing is not None and self._was_ours(existing):
                try:
                    self.client.delete(ENDPOINTS, name, namespace=ns)
                except errors.NotFound:
                    pass
            return
        if not is_managed(svc):
            return
        trigger = self.take_trigger(key)
        subsets = compute_subsets(svc, self.pods_in(ns))
        labels = dict(svc.metadata.labels)
        if svc.spec.cluster_ip in ("", "None"):
            labels[HEADLESS_LABEL] = ""
        if existing is not None and (existing.get("subsets") or []) == subsets and labels_of(existing) == labels:
            self.clear_trigger(key, trigger)
            return
        body: Obj = {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": {
                "name": name,
                "namespace": ns,
                "labels": labels,
                "annotations": {TRIGGER_TIME: format_time(trigger)},
            },
            "subsets": subsets,
        }
        if existing is None:
            try:
                self.client.create(ENDPOINTS, body, namespace=ns)
            except errors.AlreadyExists:
                current = self.client.get(ENDPOINTS, name, namespace=ns)
                body["metadata"]["resourceVersion"] = current["metadata"].get("resourceVersion")
                self.client.update(ENDPOINTS, body)
            except errors.NotFound:
                return  # namespace going away
        else:
            annotations = dict((existing.get("metadata") or {}).get("annotations") or {})
            annotations[TRIGGER_TIME] = format_time(trigger)
            body["metadata"]["annotations"] = annotations
            body["metadata"]["resourceVersion"] = existing["metadata"].get("resourceVersion")
            self.client.update(ENDPOINTS, body)
        self.clear_trigger(key, trigger)

    @staticmethod
    def _was_ours(ep: Obj) -> bool:
        return TRIGGER_TIME in ((ep.get("metadata") or {}).get("annotations") or {})


class EndpointSliceController(_ServicePodsController):
    name = "endpointslice"
    workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.slice_informer = ctx.informers.get(ENDPOINTSLICES)
        self.slice_informer.add_handler(on_update=lambda _o, n: self._slice_event(n), on_delete=self._slice_event)
        # Slices we created that the informer has not shown us yet (name -> monotonic time):
        # syncing before they appear would create duplicates (Kubernetes' endpointSliceTracker).
        self._unseen: dict[str, dict[str, float]] = {}

    def _slice_event(self, sl: Obj) -> None:
        labels = labels_of(sl)
        if labels.get(MANAGED_BY_LABEL) == MANAGED_BY and labels.get(SERVICE_NAME_LABEL):
            self.queue.add(f"{namespace_of(sl)}/{labels[SERVICE_NAME_LABEL]}")

    def existing_slices(self, ns: str, svc_name: str) -> list[Obj]:
        return sorted(
            (
                s
                for s in self.slice_informer.by_index(NAMESPACE_INDEX, ns)
                if labels_of(s).get(SERVICE_NAME_LABEL) == svc_name and labels_of(s).get(MANAGED_BY_LABEL) == MANAGED_BY
            ),
            key=name_of,
        )

    def sync(self, key: str) -> None:
        ns, name = split_key(key)
        svc = self.services.get(key)
        existing = self.existing_slices(ns, name)
        if svc is None or not is_managed(svc):
            if svc is None:
                for s in existing:
                    try:
                        self.client.delete(ENDPOINTSLICES, name_of(s), namespace=ns)
                    except errors.NotFound:
                        pass
            return
        unseen = self._unseen.get(key, {})
        for s in existing:
            unseen.pop(name_of(s), None)
        if any(time.monotonic() - t < UNSEEN_TTL for t in unseen.values()):
            raise TemporaryError(0.05, "waiting for created EndpointSlices to reach the cache")
        self._unseen.pop(key, None)
        trigger = self.take_trigger(key)
        desired = compute_slice_contents(svc, self.pods_in(ns))
        labels = {**svc.metadata.labels, SERVICE_NAME_LABEL: name, MANAGED_BY_LABEL: MANAGED_BY}
        changed = False
        # Reuse existing slices in name order; create the rest; delete leftovers.
        for i, (ports, endpoints) in enumerate(desired):
            want_ports = slice_ports(ports)
            if i < len(existing):
                cur = existing[i]
                if (
                    (cur.get("endpoints") or []) == endpoints
                    and (cur.get("ports") or []) == want_ports
                    and labels_of(cur) == labels
                ):
                    continue
                body = copy.deepcopy(cur)
                body["endpoints"] = endpoints
                body["ports"] = want_ports
                body["metadata"]["labels"] = labels
                ann = dict(body["metadata"].get("annotations") or {})
                ann[TRIGGER_TIME] = format_time(trigger)
                body["metadata"]["annotations"] = ann
                self.client.update(ENDPOINTSLICES, body)
                changed = True
            else:
                body = {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "generateName": f"{name}-",
                        "namespace": ns,
                        "labels": labels,
                        "annotations": {TRIGGER_TIME: format_time(trigger)},
                        "ownerReferences": [service_controller_ref(svc)],
                    },
                    "addressType": "IPv4",
                    "endpoints": endpoints,
                    "ports": want_ports,
                }
                try:
                    created = self.client.create(ENDPOINTSLICES, body, namespace=ns)
                except errors.NotFound:
                    return
                self._unseen.setdefault(key, {})[name_of(created)] = time.monotonic()
                changed = True
        for s in existing[len(desired) :]:
            try:
                self.client.delete(ENDPOINTSLICES, name_of(s), namespace=ns)
            except errors.NotFound:
                pass
            changed = True
        if changed:
            log.debug("endpointslices of %s updated", key)
        self.clear_trigger(key, trigger)
