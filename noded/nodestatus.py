"""The node status manager (kubelet's ``nodestatus`` + ``nodelease``): the Node object and its Lease.

Role: register the Node (capacity, allocatable, addresses, nodeInfo, conditions), renew its Lease
in ``kube-node-lease`` every ``lease_period``, post the status every ``status_period`` and at once
when Ready flips (kubelet's ``updateRuntimeUp`` every 5 s through ``noded.readiness``), and write
the CNI config list once ``spec.podCIDR`` is known (``noded.network.cni.render_conflist``).

Concurrency: ``run`` is one thread (noded's "node-status"); ``register_node`` is also called by the
agent's start before any other thread runs. The only shared state is ``readiness`` (thread-safe)
and ``registered`` (an Event). Errors are logged once per distinct error (``FailureLog``) and
retried on the next tick; a deleted Node is registered again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from controlplane.api import errors, registry
from controlplane.api.models import Node
from controlplane.client.failures import FailureLog
from controlplane.client.rest import ApiClient
from noded.config import NodedConfig
from noded.network.cni import CniInvoker, render_conflist
from noded.readiness import RuntimeState
from noded.runtime.interface import ContainerRuntime

log = logging.getLogger(__name__)

KUBELET_VERSION = "v1.30.0-kubelab"
LEASE_NAMESPACE = "kube-node-lease"


def micro_time(t: float | None = None) -> str:
    dt = datetime.fromtimestamp(time.time() if t is None else t, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rfc3339(t: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if t is None else t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class NodeStatusManager:
    def __init__(
        self,
        cfg: NodedConfig,
        client: ApiClient,
        runtime: ContainerRuntime,
        cni: CniInvoker,
        readiness: RuntimeState,
        *,
        on_network_ready: Callable[[], None] = lambda: None,
    ) -> None:
        self.cfg = cfg
        self.client = client
        self.runtime = runtime
        self.cni = cni
        self.readiness = readiness
        # Called when the CNI config was just written: pods waiting for the network sync again.
        self.on_network_ready = on_network_ready
        self.registered = threading.Event()
        self._failures = FailureLog(log, "node status/lease update")

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
                "conditions": self.conditions(),
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

    def conditions(self, old: Node | None = None) -> list[dict[str, Any]]:
        """The five conditions kubelet posts; a status that did not change keeps its transition time."""
        now = rfc3339()
        prev = {c.type: c for c in old.status.conditions} if old is not None else {}
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
            ltt = p.last_transition_time if p and p.status == s and p.last_transition_time else now
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
        self.registered.set()
        self.renew_lease()

    def update_node_status(self) -> dict[str, Any]:
        current = Node.decode(self.client.get(registry.NODES, self.cfg.node_name))
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

    def ensure_cni_config(self, node: Node) -> bool:
        """Write the conflist for ``spec.podCIDR`` (noded renders it itself; see network.cni)."""
        cidr = node.spec.pod_cidr
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

    def run(self, stop: threading.Event) -> None:
        """The node-status thread until ``stop``: Lease, status, CNI config, Ready flips."""
        last_lease = last_status = 0.0
        posted = self.readiness.ready()[:2]  # (status, reason) last posted
        while not stop.is_set():
            now = time.monotonic()
            try:
                if now - last_lease >= self.cfg.lease_period:
                    self.renew_lease()
                    last_lease = now
                need_cni = not self.cni.ready()
                if need_cni or now - last_status >= self.cfg.status_period:
                    node = Node.decode(self.client.get(registry.NODES, self.cfg.node_name))
                    wrote = self.ensure_cni_config(node)
                    if wrote and need_cni:
                        self.readiness.check(self.runtime, self.cni, force=True)
                    if (wrote and need_cni) or now - last_status >= self.cfg.status_period:
                        self.update_node_status()
                        last_status = now
                        posted = self.readiness.ready()[:2]
                        if wrote and need_cni:
                            self.on_network_ready()
                # kubelet's updateRuntimeUp (every 5 s): a Ready flip is posted at once.
                if self.readiness.check(self.runtime, self.cni) and self.readiness.ready()[:2] != posted:
                    self.update_node_status()
                    last_status = time.monotonic()
                    posted = self.readiness.ready()[:2]
            except errors.NotFound:
                with contextlib.suppress(Exception):
                    self.register_node()
            except Exception as exc:
                self._failures.failure(exc, level=logging.WARNING)
            else:
                self._failures.success()
            stop.wait(0.5 if not self.cni.ready() else 1.0)
