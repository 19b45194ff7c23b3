"""``Noded``: the node agent's main loop (kubelet): node registration and heartbeat, pod sources,
per-pod workers, housekeeping, and the kubelet API.

Threads:
- the pod informer (``spec.nodeName=<me>``) and the service informer (for service env vars) feed a
  work queue of pod keys; ``workers`` threads run ``PodWorker.sync_pod`` (one key never twice at
  once — the queue guarantees it) and re-queue with the delay it returns (back-offs, retries).
  The work queue (``controlplane.client.workqueue``) has an urgent lane: a pod that appears, a change of its spec or
  its deletion, and static pods are synced before resyncs that only follow our own status
  writes, probe results or PLEG events (kubelet's per-pod workers give it the same property);
- ``_node_loop``: registers the Node, renews its Lease in ``kube-node-lease`` every 10 s, updates
  conditions and waits for ``spec.podCIDR`` to write the CNI config list; every 5 s it checks the
  runtime and the CNI network (``noded.readiness``, kubelet's ``updateRuntimeUp``) and posts the
  status at once when Ready flips (``Ready=False`` with kubelet's reason and message while the
  runtime or the network is unusable, ``Ready=True`` again when the cause is gone);
- ``_housekeeping``: static pod manifests → mirror pods; sandboxes whose pod is gone from the API
  are torn down; image GC by disk use;
- the kubelet API server (``noded.server``) when TLS files are given.

Restart safety: nothing here is persisted except what the runtime holds (runc state, meta files,
CNI cache); after a restart the informer lists the pods again and each sync finds its sandbox and
containers running, so nothing is restarted or duplicated.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import yaml

from controlplane.api import errors, registry
from controlplane.client.controller import worker_loop
from controlplane.client.events import EventRecorder
from controlplane.client.failures import FailureLog
from controlplane.client.informer import Informer
from controlplane.client.rest import ApiClient
from controlplane.client.workqueue import WorkQueue
from noded import names
from noded.images.store import ImageStore
from noded.network.cni import CniInvoker, render_conflist
from noded.network.netns import NetnsManager
from noded.podworker import PodWorker, WorkerConfig
from noded.readiness import RuntimeState
from noded.runtime.interface import ContainerRuntime

log = logging.getLogger(__name__)

KUBELET_VERSION = "v1.30.0-kubelab"
LEASE_NAMESPACE = "kube-node-lease"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
SOURCE_ANNOTATION = "kubernetes.io/config.source"
HASH_ANNOTATION = "kubernetes.io/config.hash"


@dataclass
class NodedConfig:
    node_name: str
    node_ip: str
    root_dir: Path
    cni_conf_dir: Path
    cni_bin_dirs: list[Path]
    cni: str = "kubelab"
    manifests_dir: Path | None = None
    log_root: Path = Path("/var/log/pods")
    netns_prefix: str = ""
    cni_exec_prefix: list[str] = field(default_factory=list)
    node_netns_path: str = ""
    insecure_registries: list[str] = field(default_factory=list)
    kubelet_port: int = 10250
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    workers: int = 8
    lease_period: float = 10.0
    status_period: float = 10.0
    housekeeping_period: float = 2.0
    pleg_period: float = 1.0
    backoff_base: float = 10.0
    backoff_cap: float = 300.0
    cluster_dns: str = "10.96.0.10"
    cluster_cidr: str = "10.244.0.0/16"
    pause_image: str = ""
    image_gc_high_bytes: int = 10 * 2**30
    image_gc_period: float = 60.0
    max_pods: int = 110


def _is_mirror(pod: dict[str, Any]) -> bool:
    return MIRROR_ANNOTATION in (pod.get("metadata", {}).get("annotations") or {})


def _intent_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether an update changes what the pod should be (spec, labels, annotations, deletion) rather
    than only its status — mostly the echo of noded's own status write, which must not jump the
    queue ahead of pods a user is waiting for (see ``controlplane.client.workqueue``)."""
    volatile = ("resourceVersion", "managedFields")

    def intent(o: dict[str, Any]) -> dict[str, Any]:
        md = {k: v for k, v in (o.get("metadata") or {}).items() if k not in volatile}
        return {**{k: v for k, v in o.items() if k != "status"}, "metadata": md}

    return intent(old) != intent(new)


def micro_time(t: float | None = None) -> str:
    dt = datetime.fromtimestamp(time.time() if t is None else t, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ApiPodSink:
    """``PodApi`` over the REST client (status via merge patch of ``pods/status``)."""

    def __init__(self, client: ApiClient, recorder: EventRecorder, services: Callable[[], list[dict[str, Any]]]):
        self.client = client
        self.recorder = recorder
        self._services = services
        self.mirror_lookup: Callable[[str], dict[str, Any] | None] = lambda key: None

    def update_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        md = pod["metadata"]
        if _is_mirror(pod):
            # A static pod's status goes to its mirror pod (which has its own uid).
            mirror = self.mirror_lookup(names.pod_key(pod))
            if mirror is None or not _is_mirror(mirror):
                return
            md = mirror["metadata"]
        try:
            self.client.patch(
                registry.PODS,
                md["name"],
                {"metadata": {"uid": md["uid"]}, "status": status},
                namespace=md.get("namespace", "default"),
                patch_type="merge",
                subresource="status",
            )
        except errors.NotFound:
            pass

    def delete_pod(self, pod: dict[str, Any]) -> None:
        md = pod["metadata"]
        with contextlib.suppress(errors.NotFound, errors.Conflict):
            self.client.delete(
                registry.PODS,
                md["name"],
                namespace=md.get("namespace", "default"),
                grace_period_seconds=0,
                preconditions={"uid": md["uid"]},
            )

    def event(self, pod: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.recorder.event(pod, type_, reason, message)

    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        res = registry.CONFIGMAPS if kind == "configMap" else registry.SECRETS
        try:
            return self.client.get(res, name, namespace)
        except errors.NotFound:
            return None

    def services(self) -> list[dict[str, Any]]:
        return self._services()

    def request_token(self, namespace: str, service_account: str, body: dict[str, Any]) -> dict[str, Any]:
        """TokenRequest for a projected ServiceAccount token (``noded.volumes.TokenManager``)."""
        answer: dict[str, Any] = self.client.post_subresource(
            registry.SERVICEACCOUNTS, service_account, "token", body, namespace=namespace
        )
        return answer


class Noded:
    def __init__(
        self,
        cfg: NodedConfig,
        client: ApiClient,
        runtime: ContainerRuntime,
        images: ImageStore | None = None,
    ) -> None:
        self.cfg = cfg
        self.client = client
        self.runtime = runtime
        self.images = images
        self.recorder = EventRecorder(client, "kubelet", host=cfg.node_name)
        self.pods = Informer(client, registry.PODS, field_selector=f"spec.nodeName={cfg.node_name}", name="pods")
        self.services = Informer(client, registry.SERVICES, name="services")
        self.queue: WorkQueue[str] = WorkQueue("pods")
        self.cni = CniInvoker(
            cfg.cni_conf_dir, cfg.cni_bin_dirs, cfg.root_dir / "cni-cache", exec_prefix=cfg.cni_exec_prefix
        )
        self.netns = NetnsManager()
        self.sink = ApiPodSink(client, self.recorder, self.services.list)
        self.sink.mirror_lookup = self.pods.get
        wcfg = WorkerConfig(
            node_name=cfg.node_name,
            node_ip=cfg.node_ip,
            root_dir=cfg.root_dir,
            log_root=cfg.log_root,
            netns_prefix=cfg.netns_prefix,
            cluster_dns=cfg.cluster_dns,
            backoff_base=cfg.backoff_base,
            backoff_cap=cfg.backoff_cap,
            pause_image=cfg.pause_image,
            node_netns_path=cfg.node_netns_path,
        )
        self.worker = PodWorker(wcfg, runtime, images, self.cni, self.netns, self.sink, on_change=self.queue.add)
        self._deleted: dict[str, dict[str, Any]] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._static_pods: dict[str, dict[str, Any]] = {}  # key -> static pod (from its manifest)
        self.server: Any = None
        self.node_registered = threading.Event()
        self.readiness = RuntimeState()
        self._status_failures = FailureLog(log, "node status/lease update")
        self._pleg_failures = FailureLog(log, "pleg relist")

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.cfg.root_dir.mkdir(parents=True, exist_ok=True)
        # Like kubelet: keep trying to register until the API server answers (it may start later).
        delay = 0.2
        while not self._stop.is_set():
            try:
                self.register_node()
                break
            except Exception as exc:
                log.warning("registering node %s failed (retrying in %.1fs): %s", self.cfg.node_name, delay, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 10.0)
        self.pods.add_handler(
            on_add=self._on_add,
            on_update=self._on_update,
            on_delete=self._on_delete,
        )
        self.services.start()
        self.pods.start()
        for fn, name in (
            (self._node_loop, "node-status"),
            (self._housekeeping, "housekeeping"),
            (self._pleg, "pleg"),
        ):
            t = threading.Thread(target=fn, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        for i in range(max(1, self.cfg.workers)):
            t = threading.Thread(target=self._work, name=f"pod-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        if self.cfg.tls_cert and self.cfg.tls_key and self.cfg.client_ca:
            from noded.server import KubeletServer

            self.server = KubeletServer(
                self,
                self.cfg.tls_cert,
                self.cfg.tls_key,
                self.cfg.client_ca,
                host=self.cfg.node_ip,
                port=self.cfg.kubelet_port,
            )
            self.server.start()

    def stop(self) -> None:
        self._stop.set()
        self.queue.shutdown()
        self.pods.stop()
        self.services.stop()
        if self.server is not None:
            self.server.stop()
        self.worker.close()
        self.recorder.close()
        for t in self._threads:
            t.join(timeout=5)

    def run(self, stop: threading.Event) -> None:
        # A stop request must also end a registration still waiting for the API server.
        def relay() -> None:
            stop.wait()
            self._stop.set()

        threading.Thread(target=relay, daemon=True, name="stop-relay").start()
        self.start()
        try:
            stop.wait()
        finally:
            self.stop()

    # ---- pods ------------------------------------------------------------------------------

    def _enqueue(self, key: str, why: str, *, urgent: bool) -> None:
        log.debug("queue %s: %s%s (queue length %d)", key, why, " (urgent)" if urgent else "", len(self.queue))
        self.queue.add(key, urgent=urgent)

    def _on_add(self, obj: dict[str, Any]) -> None:
        self._enqueue(names.pod_key(obj), "added", urgent=True)

    def _on_update(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        self._enqueue(names.pod_key(new), "updated", urgent=_intent_changed(old, new))

    def _on_delete(self, obj: dict[str, Any]) -> None:
        key = names.pod_key(obj)
        self._deleted[key] = obj
        self._enqueue(key, "deleted", urgent=True)

    def _work(self) -> None:
        """One pod worker: the client's worker loop (``controlplane.client.controller``) over the pod
        queue. ``sync`` returning a delay (a probe period, a crash-loop back-off) requeues the pod
        after it; raising requeues it with the queue's per-key backoff."""
        worker_loop(self.queue, self._timed_sync, self._stop)

    def _timed_sync(self, key: str) -> float | None:
        t0 = time.monotonic()
        log.debug("sync %s: start", key)
        delay = self.sync(key)
        log.debug("sync %s: done in %.3fs (again in %s)", key, time.monotonic() - t0, delay)
        return delay

    def sync(self, key: str) -> float | None:
        static = self._static_pods.get(key)
        api_pod = self.pods.get(key)
        if static is not None:
            # A static pod runs from its manifest (its own uid), whatever the API holds; the
            # mirror pod only carries its status (kubelet's podManager does the same).
            spod = copy.deepcopy(static)
            if api_pod is not None and _is_mirror(api_pod) and not api_pod["metadata"].get("deletionTimestamp"):
                spod["status"] = copy.deepcopy(api_pod.get("status") or {})
            return self.worker.sync_pod(spod)
        if api_pod is not None and _is_mirror(api_pod):
            # A mirror whose manifest is gone: tear the static pod down; housekeeping removes the mirror.
            gone = self._deleted.pop(key, None)
            if gone is not None:
                self.worker.teardown(gone)
                self.worker.probes.forget(key)
            return None
        pod = api_pod
        if pod is None:
            gone = self._deleted.pop(key, None)
            if gone is not None:
                # Deleted from the API without us (force delete): tear everything down.
                self.worker.teardown(gone)
                self.worker.probes.forget(key)
            return None
        self._deleted.pop(key, None)
        return self.worker.sync_pod(copy.deepcopy(pod))

    # ---- node ------------------------------------------------------------------------------

    def node_object(self) -> dict[str, Any]:
        cpu = psutil.cpu_count() or 1
        mem = psutil.virtual_memory().total
        disk = psutil.disk_usage(str(self.cfg.root_dir)).total
        capacity = {
            "cpu": str(cpu),
            "memory": f"{mem // 1024}Ki",
            "ephemeral-storage": f"{disk // 1024}Ki",
            "pods": str(self.cfg.max_pods),
        }
        allocatable = dict(capacity)
        allocatable["memory"] = f"{max(mem - 256 * 2**20, 0) // 1024}Ki"
        uname = platform.uname()
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.cfg.node_name,
                "labels": {
                    "kubernetes.io/hostname": self.cfg.node_name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64" if uname.machine == "x86_64" else uname.machine,
                    "beta.kubernetes.io/os": "linux",
                    "beta.kubernetes.io/arch": "amd64" if uname.machine == "x86_64" else uname.machine,
                },
            },
            "spec": {},
            "status": {
                "capacity": capacity,
                "allocatable": allocatable,
                "addresses": self.addresses(),
                "daemonEndpoints": {"kubeletEndpoint": {"Port": self.cfg.kubelet_port}},
                "nodeInfo": self.node_info(),
                "conditions": self.conditions({}),
            },
        }

    def addresses(self) -> list[dict[str, str]]:
        """InternalIP = --node-ip (checked to be on an interface of this netns), and the hostname.
        Only the interface holding the node IP is used — never a NAT uplink."""
        addrs = [{"type": "InternalIP", "address": self.cfg.node_ip}]
        found = any(a.address == self.cfg.node_ip for ifaddrs in psutil.net_if_addrs().values() for a in ifaddrs)
        if not found:
            log.warning("node IP %s is not on any interface of this network namespace", self.cfg.node_ip)
        addrs.append({"type": "Hostname", "address": self.cfg.node_name})
        return addrs

    def node_info(self) -> dict[str, str]:
        uname = platform.uname()
        os_image = "Linux"
        with contextlib.suppress(OSError):
            for line in Path("/etc/os-release").read_text().splitlines():
                if line.startswith("PRETTY_NAME="):
                    os_image = line.split("=", 1)[1].strip('"')
        runc_version = "unknown"
        with contextlib.suppress(Exception):
            import subprocess

            out = subprocess.run(
                ["runc", "--version"], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL
            ).stdout
            runc_version = out.splitlines()[0].split()[-1]
        machine_id = ""
        with contextlib.suppress(OSError):
            machine_id = Path("/etc/machine-id").read_text().strip()
        boot_id = ""
        with contextlib.suppress(OSError):
            boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return {
            "kernelVersion": uname.release,
            "osImage": os_image,
            "operatingSystem": "linux",
            "architecture": "amd64" if uname.machine == "x86_64" else uname.machine,
            "containerRuntimeVersion": f"runc://{runc_version}",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "machineID": machine_id,
            "systemUUID": hashlib.sha256(f"{machine_id}/{self.cfg.node_name}".encode()).hexdigest()[:32],
            "bootID": boot_id,
        }

    def conditions(self, old: dict[str, Any]) -> list[dict[str, Any]]:
        now = rfc3339()
        prev = {c["type"]: c for c in (old.get("status") or {}).get("conditions") or []}
        mem = psutil.virtual_memory()
        disk = psutil.disk_usage(str(self.cfg.root_dir))
        pids = len(psutil.pids())
        with contextlib.suppress(OSError, ValueError):
            pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
        net_ready = self.cni.ready()
        ready, ready_reason, ready_message = self.readiness.ready()

        def cond(type_: str, status: bool, reason: str, message: str) -> dict[str, Any]:
            s = "True" if status else "False"
            p = prev.get(type_)
            ltt = p["lastTransitionTime"] if p and p.get("status") == s else now
            return {
                "type": type_,
                "status": s,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": now,
                "lastTransitionTime": ltt,
            }

        mem_pressure = mem.available < 100 * 2**20
        disk_pressure = disk.free < 0.1 * disk.total
        pid_pressure = pids > 0.95 * pid_max if "pid_max" in locals() else False
        return [
            cond(
                "MemoryPressure",
                mem_pressure,
                "KubeletHasInsufficientMemory" if mem_pressure else "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available"
                if not mem_pressure
                else "kubelet has insufficient memory available",
            ),
            cond(
                "DiskPressure",
                disk_pressure,
                "KubeletHasDiskPressure" if disk_pressure else "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure" if not disk_pressure else "kubelet has disk pressure",
            ),
            cond(
                "PIDPressure",
                pid_pressure,
                "KubeletHasInsufficientPID" if pid_pressure else "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            cond(
                "NetworkUnavailable",
                not net_ready,
                "NoCNIConfig" if not net_ready else "CNIConfigPresent",
                "network plugin is not ready: cni config uninitialized"
                if not net_ready
                else "CNI network config written for the node's podCIDR",
            ),
            cond("Ready", ready, ready_reason, ready_message),
        ]

    def register_node(self) -> None:
        self.readiness.check(self.runtime, self.cni, force=True)
        node = self.node_object()
        try:
            self.client.create(registry.NODES, node)
            log.info("registered node %s", self.cfg.node_name)
        except errors.AlreadyExists:
            self.update_node_status()
        self.node_registered.set()
        self.renew_lease()

    def update_node_status(self) -> dict[str, Any]:
        current = self.client.get(registry.NODES, self.cfg.node_name)
        fresh = self.node_object()
        status = fresh["status"]
        status["conditions"] = self.conditions(current)
        patch = {"metadata": {"labels": fresh["metadata"]["labels"]}, "status": status}
        return self.client.patch(registry.NODES, self.cfg.node_name, patch, patch_type="merge", subresource="status")

    def renew_lease(self) -> None:
        lease = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.cfg.node_name, "namespace": LEASE_NAMESPACE},
            "spec": {"holderIdentity": self.cfg.node_name, "leaseDurationSeconds": 40, "renewTime": micro_time()},
        }
        try:
            self.client.patch(
                registry.LEASES,
                self.cfg.node_name,
                {"spec": lease["spec"]},
                namespace=LEASE_NAMESPACE,
                patch_type="merge",
            )
        except errors.NotFound:
            with contextlib.suppress(errors.AlreadyExists):
                self.client.create(registry.LEASES, lease, namespace=LEASE_NAMESPACE)

    def ensure_cni_config(self, node: dict[str, Any]) -> bool:
        """Write the conflist for ``spec.podCIDR`` (noded renders it itself; see network.cni)."""
        cidr = (node.get("spec") or {}).get("podCIDR")
        if not cidr:
            return False
        conf = render_conflist(
            cidr,
            cni=self.cfg.cni,
            cluster_cidr=self.cfg.cluster_cidr,
            # The node's own reservations dir (host-local's layout), not the shared default
            # /var/lib/cni/networks: several lab nodes share one filesystem, and `kubelab noded
            # cleanup` / `kubelab down` remove the root dir with everything in it.
            data_dir=str(self.cfg.root_dir / "ipam"),
        )
        self.cfg.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        path = self.cfg.cni_conf_dir / "10-kubelab.conflist"
        text = json.dumps(conf, indent=2) + "\n"
        if not path.exists() or path.read_text() != text:
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            os.replace(tmp, path)
            log.info("wrote CNI config %s for podCIDR %s (%s)", path, cidr, self.cfg.cni)
        return True

    def _node_loop(self) -> None:
        last_lease = last_status = 0.0
        posted = self.readiness.ready()[:2]  # (status, reason) last posted
        while not self._stop.is_set():
            now = time.monotonic()
            try:
                if now - last_lease >= self.cfg.lease_period:
                    self.renew_lease()
                    last_lease = now
                need_cni = not self.cni.ready()
                if need_cni or now - last_status >= self.cfg.status_period:
                    node = self.client.get(registry.NODES, self.cfg.node_name)
                    wrote = self.ensure_cni_config(node)
                    if wrote and need_cni:
                        self.readiness.check(self.runtime, self.cni, force=True)
                    if (wrote and need_cni) or now - last_status >= self.cfg.status_period:
                        self.update_node_status()
                        last_status = now
                        posted = self.readiness.ready()[:2]
                        if wrote and need_cni:
                            for pod in self.pods.list():
                                self.queue.add(names.pod_key(pod))
                # kubelet's updateRuntimeUp (every 5 s): a Ready flip is posted at once.
                if self.readiness.check(self.runtime, self.cni) and self.readiness.ready()[:2] != posted:
                    self.update_node_status()
                    last_status = time.monotonic()
                    posted = self.readiness.ready()[:2]
            except errors.NotFound:
                with contextlib.suppress(Exception):
                    self.register_node()
            except Exception as exc:
                self._status_failures.failure(exc, level=logging.WARNING)
            else:
                self._status_failures.success()
            self._stop.wait(0.5 if not self.cni.ready() else 1.0)

    # ---- PLEG ------------------------------------------------------------------------------

    def _pleg(self) -> None:
        """Kubelet's pod lifecycle event generator: relist the runtime every ``pleg_period`` and
        enqueue every pod whose containers or sandboxes changed state (a container exiting is
        seen here; nothing in the API would tell us)."""
        last: dict[str, str] = {}
        while not self._stop.wait(self.cfg.pleg_period):
            try:
                sandboxes = {sb.id: sb for sb in self.runtime.list_pod_sandboxes()}
                now: dict[str, str] = {sid: str(sb.state) for sid, sb in sandboxes.items()}
                owner = {sid: f"{sb.namespace}/{sb.name}" for sid, sb in sandboxes.items()}
                for c in self.runtime.list_containers():
                    now[c.id] = str(c.state)
                    if c.sandbox_id in owner:
                        owner[c.id] = owner[c.sandbox_id]
                for cid, state in now.items():
                    if last.get(cid) != state and cid in owner:
                        self.queue.add(owner[cid])
                last = now
                self.readiness.pleg_relisted()
                self._pleg_failures.success()
            except Exception as exc:
                self._pleg_failures.failure(exc, level=logging.WARNING)

    # ---- housekeeping ----------------------------------------------------------------------

    def _housekeeping(self) -> None:
        last_gc = 0.0
        while not self._stop.wait(self.cfg.housekeeping_period):
            try:
                self.sync_static_pods()
            except Exception as exc:
                log.warning("static pods: %s", exc)
            try:
                self.remove_orphans()
            except Exception as exc:
                log.warning("orphan cleanup: %s", exc)
            # Image GC by disk use (kubelet's high/low thresholds), at most once a minute: measuring
            # the store walks every unpacked file.
            if self.images is not None and time.monotonic() - last_gc >= self.cfg.image_gc_period:
                last_gc = time.monotonic()
                with contextlib.suppress(Exception):
                    in_use = [c.image for c in self.runtime.list_containers()]
                    if self.images.disk_usage() > self.cfg.image_gc_high_bytes:
                        self.images.gc(int(self.cfg.image_gc_high_bytes * 0.8), in_use)

    def remove_orphans(self) -> None:
        """Sandboxes of pods the API no longer has for this node (deleted while we were down)."""
        if not self.pods.has_synced():
            return
        known = {p["metadata"]["uid"] for p in self.pods.list() if not _is_mirror(p)}
        known |= {p["metadata"]["uid"] for p in self._static_pods.values()}
        for sb in self.runtime.list_pod_sandboxes():
            if sb.uid not in known:
                pod = {"metadata": {"name": sb.name, "namespace": sb.namespace, "uid": sb.uid}, "spec": {}}
                log.info("removing orphaned sandbox %s (pod %s/%s is gone)", sb.id, sb.namespace, sb.name)
                self.worker.teardown(pod)

    def static_pods(self) -> dict[str, dict[str, Any]]:
        """Valid manifests from ``--manifests-dir`` as mirror pods; invalid files are logged, skipped."""
        out: dict[str, dict[str, Any]] = {}
        d = self.cfg.manifests_dir
        if d is None or not d.is_dir():
            return out
        for f in sorted(d.iterdir()):
            if f.suffix not in (".yaml", ".yml", ".json") or f.name.startswith("."):
                continue
            try:
                text = f.read_text()
                obj = yaml.safe_load(text)
                if not isinstance(obj, dict) or obj.get("kind") != "Pod":
                    raise ValueError("not a Pod manifest (kind must be Pod)")
                md = obj.get("metadata") or {}
                if not md.get("name"):
                    raise ValueError("metadata.name is required")
                cs = (obj.get("spec") or {}).get("containers")
                if not cs or not all(isinstance(c, dict) and c.get("name") and c.get("image") for c in cs):
                    raise ValueError("spec.containers must list containers with a name and an image")
            except (OSError, yaml.YAMLError, ValueError) as exc:
                log.error("static pod manifest %s is invalid, skipped: %s", f, exc)
                continue
            h = hashlib.sha256(text.encode()).hexdigest()[:16]
            name = f"{md['name']}-{self.cfg.node_name}"
            pod = copy.deepcopy(obj)
            pod["apiVersion"] = "v1"
            pmd = pod.setdefault("metadata", {})
            pmd["name"] = name
            pmd.setdefault("namespace", "default")
            pmd.setdefault("annotations", {}).update(
                {MIRROR_ANNOTATION: h, SOURCE_ANNOTATION: "file", HASH_ANNOTATION: h}
            )
            # The static pod's own uid (stable for this manifest on this node): the runtime knows
            # it by this uid; the mirror in the API gets its own.
            u = hashlib.sha256(f"{self.cfg.node_name}/{pmd['namespace']}/{name}/{h}".encode()).hexdigest()
            pmd["uid"] = f"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:32]}"
            pmd.pop("resourceVersion", None)
            pod["spec"]["nodeName"] = self.cfg.node_name
            pod.pop("status", None)
            out[f"{pmd['namespace']}/{name}"] = pod
        return out

    def sync_static_pods(self) -> None:
        if self.cfg.manifests_dir is None:
            return
        want = self.static_pods()
        for key in set(self._static_pods) | set(want):
            old, new = self._static_pods.get(key), want.get(key)
            if (old or {}).get("metadata", {}).get("uid") != (new or {}).get("metadata", {}).get("uid"):
                if old is not None:
                    self._deleted[key] = old  # replaced or gone: tear the old static pod down
                self.queue.add(key, urgent=True)
        self._static_pods = want
        for key, pod in want.items():
            h = pod["metadata"]["annotations"][MIRROR_ANNOTATION]
            ns, name = key.split("/", 1)
            live = self.pods.get(key)
            if (
                live is not None
                and _is_mirror(live)
                and live["metadata"]["annotations"][MIRROR_ANNOTATION] == h
                and not live["metadata"].get("deletionTimestamp")
            ):
                continue
            if live is not None:
                # Outdated, being deleted, or not a mirror: replace it (the static pod keeps running).
                with contextlib.suppress(errors.NotFound):
                    self.client.delete(registry.PODS, name, namespace=ns, grace_period_seconds=0)
                continue
            mirror = copy.deepcopy(pod)
            mirror["metadata"].pop("uid", None)
            with contextlib.suppress(errors.AlreadyExists):
                self.client.create(registry.PODS, mirror, namespace=ns)
                log.info("created mirror pod %s", key)
        for p in self.pods.list():
            if _is_mirror(p) and names.pod_key(p) not in want:
                with contextlib.suppress(errors.NotFound):
                    self.client.delete(
                        registry.PODS,
                        p["metadata"]["name"],
                        namespace=p["metadata"]["namespace"],
                        grace_period_seconds=0,
                    )
