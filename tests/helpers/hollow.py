"""Hollow nodes and a fake kubelet: a cluster's worth of nodes without containers.

Role (issue 3's acceptance tests and the scheduler benchmark): control-plane components see Node
objects that look like real kubelets' — capacity/allocatable, a Ready condition, addresses, a
``kube-node-lease`` Lease renewed by a heartbeat — and pods that get bound are marked Running and
Ready by ``FakeKubelet``, which plays the kubelet's part of the pod lifecycle:

- bound pod (``spec.nodeName`` is one of its nodes) not yet Running → ``status`` Running, Ready,
  with a podIP (from the node's ``spec.podCIDR`` when set, else ``10.244.<node index>.0/24``);
- pod with a ``deletionTimestamp`` on one of its nodes → deleted with grace period 0 (the kubelet
  confirms termination).

Everything goes through the API (no back doors). Addresses in Node objects are loopback
addresses (127.1.x.y): nothing ever connects to them, and if something tried, no packet would
leave the machine.

Usage::

    nodes = HollowNodes(client, heartbeat=0.5)
    nodes.add("n1", cpu="4", memory="8Gi", labels={"zone": "a"}, taints=[...])
    nodes.start()                   # lease + Ready heartbeat thread
    nodes.set_heartbeat("n1", False)   # the node "dies": no more lease renewals or status updates
    kubelet = FakeKubelet(client); kubelet.start()
    ...
    kubelet.stop(); nodes.stop()

Concurrency: ``HollowNodes`` has one heartbeat thread; ``FakeKubelet`` an informer plus one
worker over a work queue (the same client machinery the components use).
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx

from controlplane.api import errors
from controlplane.api.registry import LEASES, NAMESPACES, NODES, PODS
from controlplane.client.controller import run_workers
from controlplane.client.informer import Informer
from controlplane.client.leaderelection import micro_time
from controlplane.client.rest import ApiClient
from controlplane.client.workqueue import WorkQueue

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-node-lease"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_address(index: int) -> str:
    return f"127.1.{index // 250}.{index % 250 + 1}"


def ready_condition(status: str = "True") -> dict[str, Any]:
    now = _now()
    return {
        "type": "Ready",
        "status": status,
        "reason": "KubeletReady" if status == "True" else "KubeletNotReady",
        "message": "kubelet is posting ready status" if status == "True" else "hollow node not ready",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }


def node_object(
    name: str,
    *,
    index: int = 0,
    cpu: str = "4",
    memory: str = "8Gi",
    pods: str = "110",
    labels: dict[str, str] | None = None,
    taints: list[dict[str, Any]] | None = None,
    ready: bool = True,
    unschedulable: bool = False,
    pod_cidr: str | None = None,
) -> dict[str, Any]:
    """A Node as a kubelet would register it (status included)."""
    capacity = {"cpu": cpu, "memory": memory, "pods": pods, "ephemeral-storage": "100Gi"}
    spec: dict[str, Any] = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    if pod_cidr:
        spec["podCIDR"] = pod_cidr
        spec["podCIDRs"] = [pod_cidr]
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                **(labels or {}),
            },
            "annotations": {"kubelab.io/hollow": "true"},
        },
        "spec": spec,
        "status": {
            "capacity": dict(capacity),
            "allocatable": dict(capacity),
            "conditions": [ready_condition("True" if ready else "False")],
            "addresses": [
                {"type": "InternalIP", "address": node_address(index)},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "kubeletVersion": "v1.30.0-kubelab-hollow",
                "containerRuntimeVersion": "hollow://0",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "osImage": "hollow",
                "kernelVersion": "",
                "kubeProxyVersion": "",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
            },
        },
    }


def ensure_namespace(client: ApiClient, name: str) -> None:
    try:
        client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    except errors.AlreadyExists:
        pass


class HollowNodes:
    def __init__(self, client: ApiClient, *, heartbeat: float | None = 1.0, lease_duration: int = 40) -> None:
        self.client = client
        self.heartbeat = heartbeat
        self.lease_duration = lease_duration
        self.names: list[str] = []
        self._alive: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lease_ns_ready = False

    def add(self, name: str, **kw: Any) -> dict[str, Any]:
        """Register a node (Node + status + Lease), as a kubelet does at start."""
        with self._lock:
            index = len(self.names)
            self.names.append(name)
            self._alive[name] = True
        obj = node_object(name, index=index, **kw)
        status = obj["status"]
        created = self.client.create(NODES, obj)
        # Some servers drop status on create (as Kubernetes does for most kinds): post it again.
        if created.get("status", {}).get("allocatable") != status["allocatable"] or not created.get("status", {}).get(
            "conditions"
        ):
            created["status"] = status
            created = self.client.update_status(NODES, created)
        if self.heartbeat is not None:
            self._renew_lease(name)
        return created

    def add_many(self, count: int, prefix: str = "hollow-", **kw: Any) -> list[str]:
        names = [f"{prefix}{i}" for i in range(count)]
        for n in names:
            self.add(n, **kw)
        return names

    def set_heartbeat(self, name: str, alive: bool) -> None:
        with self._lock:
            self._alive[name] = alive

    def set_ready(self, name: str, ready: bool) -> None:
        """Post a Ready (or NotReady) condition now."""
        self._post_status(name, "True" if ready else "False")

    def start(self) -> None:
        if self.heartbeat is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="hollow-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        assert self.heartbeat is not None
        while not self._stop.wait(self.heartbeat):
            with self._lock:
                alive = [n for n in self.names if self._alive.get(n)]
            for name in alive:
                if self._stop.is_set():
                    return
                try:
                    self._renew_lease(name)
                    self._post_status(name, "True")
                except (errors.ApiError, httpx.HTTPError) as e:
                    log.info("hollow %s: heartbeat failed: %s", name, e)

    def _renew_lease(self, name: str) -> None:
        if not self._lease_ns_ready:
            ensure_namespace(self.client, LEASE_NAMESPACE)
            self._lease_ns_ready = True
        now = micro_time(time.time())
        try:
            lease = self.client.get(LEASES, name, LEASE_NAMESPACE)
        except errors.NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": name, "namespace": LEASE_NAMESPACE},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": self.lease_duration, "renewTime": now},
            }
            try:
                self.client.create(LEASES, body, LEASE_NAMESPACE)
            except errors.AlreadyExists:
                pass
            return
        lease.setdefault("spec", {})["renewTime"] = now
        try:
            self.client.update(LEASES, lease)
        except errors.Conflict:
            pass  # next beat

    def _post_status(self, name: str, ready: str) -> None:
        node = self.client.get(NODES, name)
        status = node.setdefault("status", {})
        conds = [c for c in status.get("conditions") or [] if c.get("type") != "Ready"]
        old = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        cond = ready_condition(ready)
        if old is not None and old.get("status") == ready:
            cond["lastTransitionTime"] = old.get("lastTransitionTime", cond["lastTransitionTime"])
        status["conditions"] = [*conds, cond]
        try:
            self.client.update_status(NODES, node)
        except errors.Conflict:
            pass


class FakeKubelet:
    """Marks pods bound to hollow nodes Running/Ready and finishes their deletion."""

    def __init__(self, client: ApiClient, nodes: set[str] | None = None, *, mark_ready: bool = True) -> None:
        self.client = client
        self.nodes = nodes  # None: every node with the kubelab.io/hollow annotation
        self.mark_ready = mark_ready
        self.pods = Informer(client, PODS, name="fake-kubelet-pods")
        self.node_informer = Informer(client, NODES, name="fake-kubelet-nodes")
        self.queue: WorkQueue[str] = WorkQueue("fake-kubelet")
        self._stop = threading.Event()
        self._runner: threading.Thread | None = None
        self._ip_next: dict[str, int] = {}
        self._ip_lock = threading.Lock()

    def _mine(self, pod: dict[str, Any]) -> bool:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node:
            return False
        if self.nodes is not None:
            return node in self.nodes
        n = self.node_informer.get(node)
        return n is not None and (n["metadata"].get("annotations") or {}).get("kubelab.io/hollow") == "true"

    def _enqueue(self, pod: dict[str, Any]) -> None:
        if self._mine(pod):
            meta = pod["metadata"]
            self.queue.add(f"{meta['namespace']}/{meta['name']}")

    def start(self) -> None:
        self.node_informer.start()
        self.node_informer.wait_for_sync(30)
        self.pods.add_handler(on_add=self._enqueue, on_update=lambda old, new: self._enqueue(new))
        self.pods.start()
        self._runner = threading.Thread(
            target=run_workers, args=(self.queue, self.sync, 2, self._stop), name="fake-kubelet", daemon=True
        )
        self._runner.start()

    def stop(self) -> None:
        self._stop.set()
        if self._runner is not None:
            self._runner.join(10)
        self.pods.stop()
        self.node_informer.stop()

    def _pod_ip(self, node_name: str) -> str:
        node = self.node_informer.get(node_name) or {}
        cidr = (node.get("spec") or {}).get("podCIDR")
        with self._ip_lock:
            n = self._ip_next.get(node_name, 2)
            self._ip_next[node_name] = n + 1
            if not cidr:
                index = sorted(self.node_informer.keys()).index(node_name) if node else 0
                cidr = f"10.244.{index % 256}.0/24"
        net = ipaddress.ip_network(cidr, strict=False)
        return str(net.network_address + (n % (net.num_addresses - 2) or 2))

    def sync(self, key: str) -> None:
        pod = self.pods.get(key)
        if pod is None or not self._mine(pod):
            return
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            try:
                self.client.delete(PODS, meta["name"], meta["namespace"], grace_period_seconds=0)
            except errors.NotFound:
                pass
            return
        status = pod.get("status") or {}
        if status.get("phase") in ("Running", "Succeeded", "Failed"):
            return
        node_name = pod["spec"]["nodeName"]
        node = self.node_informer.get(node_name) or {}
        host_ip = next(
            (a["address"] for a in (node.get("status") or {}).get("addresses", []) if a.get("type") == "InternalIP"),
            "127.0.0.1",
        )
        now = _now()
        ready = "True" if self.mark_ready else "False"
        pod_ip = self._pod_ip(node_name)
        new = dict(pod)
        new["status"] = {
            **status,
            "phase": "Running",
            "hostIP": host_ip,
            "hostIPs": [{"ip": host_ip}],
            "podIP": pod_ip,
            "podIPs": [{"ip": pod_ip}],
            "startTime": now,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                {"type": "Ready", "status": ready, "lastTransitionTime": now},
            ],
            "containerStatuses": [
                {
                    "name": c.get("name", ""),
                    "image": c.get("image", ""),
                    "imageID": "",
                    "containerID": f"hollow://{meta.get('uid', '')}/{c.get('name', '')}",
                    "ready": self.mark_ready,
                    "started": True,
                    "restartCount": 0,
                    "state": {"running": {"startedAt": now}},
                }
                for c in (pod.get("spec") or {}).get("containers") or []
            ],
        }
        try:
            self.client.update_status(PODS, new)
        except (errors.Conflict, errors.NotFound):
            pass  # a newer version is on its way through the informer
