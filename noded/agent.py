"""``Noded``: the node agent (kubelet), composed of kubelet's managers.

The parts, each in its own module:
- ``noded.nodestatus.NodeStatusManager``: registration, the Lease in ``kube-node-lease``,
  conditions and the CNI config list once ``spec.podCIDR`` is known (its own thread);
- ``noded.staticpods.StaticPodSource``: manifests in ``--manifests-dir`` → static pods + mirrors;
- ``noded.podworker.PodWorker``: one pod's sync (sandbox, containers, probes, status), over the
  runtime (``noded.runtime``: runc), CNI (``noded.network``) and images (``noded.images``);
- ``noded.server.KubeletServer``: the kubelet API (logs, exec, attach, port-forward, stats) over a
  small ``KubeletHost`` view of this agent.

This module wires them and runs the pod pipeline. Threads:
- the pod informer (``spec.nodeName=<me>``) and the service informer (for service env vars) feed a
  work queue of pod keys; ``workers`` threads run ``PodWorker.sync_pod`` (one key never twice at
  once — the queue guarantees it) and re-queue with the delay it returns (back-offs, retries).
  The work queue (``controlplane.client.workqueue``) has an urgent lane: a pod that appears, a change of its spec or
  its deletion, and static pods are synced before resyncs that only follow our own status
  writes, probe results or PLEG events (kubelet's per-pod workers give it the same property);
- node status (``NodeStatusManager.run``): Lease every 10 s, status every 10 s and at once when
  Ready flips;
- ``_pleg``: relists the runtime and enqueues pods whose containers changed state;
- ``_housekeeping``: static pods; sandboxes whose pod is gone from the API are torn down; image
  GC by disk use;
- the kubelet API server when TLS files are given.

Restart safety: nothing here is persisted except what the runtime holds (runc state, meta files,
CNI cache); after a restart the informer lists the pods again and each sync finds its sandbox and
containers running, so nothing is restarted or duplicated.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from controlplane.api import errors, registry
from controlplane.client.controller import worker_loop
from controlplane.client.events import EventRecorder
from controlplane.client.failures import FailureLog
from controlplane.client.informer import Informer
from controlplane.client.rest import ApiClient
from controlplane.client.workqueue import WorkQueue
from noded import names
from noded.config import NodedConfig
from noded.images.store import ImageStore
from noded.network.cni import CniInvoker
from noded.network.netns import NetnsManager
from noded.nodestatus import NodeStatusManager
from noded.podworker import PodWorker, WorkerConfig
from noded.readiness import RuntimeState
from noded.runtime.interface import ContainerRuntime
from noded.staticpods import StaticPodSource, is_mirror

log = logging.getLogger(__name__)

__all__ = ["ApiPodSink", "Noded", "NodedConfig"]


def _intent_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether an update changes what the pod should be (spec, labels, annotations, deletion) rather
    than only its status — mostly the echo of noded's own status write, which must not jump the
    queue ahead of pods a user is waiting for (see ``controlplane.client.workqueue``)."""
    volatile = ("resourceVersion", "managedFields")

    def intent(o: dict[str, Any]) -> dict[str, Any]:
        md = {k: v for k, v in (o.get("metadata") or {}).items() if k not in volatile}
        return {**{k: v for k, v in o.items() if k != "status"}, "metadata": md}

    return intent(old) != intent(new)


class ApiPodSink:
    """``PodApi`` over the REST client (status via merge patch of ``pods/status``)."""

    def __init__(self, client: ApiClient, recorder: EventRecorder, services: Callable[[], list[dict[str, Any]]]):
        self.client = client
        self.recorder = recorder
        self._services = services
        self.mirror_lookup: Callable[[str], dict[str, Any] | None] = lambda key: None

    def update_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None:
        md = pod["metadata"]
        if is_mirror(pod):
            # A static pod's status goes to its mirror pod (which has its own uid).
            mirror = self.mirror_lookup(names.pod_key(pod))
            if mirror is None or not is_mirror(mirror):
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
        self.server: Any = None
        self.readiness = RuntimeState()
        self.node_status = NodeStatusManager(
            cfg, client, runtime, self.cni, self.readiness, on_network_ready=self._resync_all
        )
        self.node_registered = self.node_status.registered
        self.static_pods = StaticPodSource(cfg.manifests_dir, cfg.node_name, client, self.pods, self._static_changed)
        self._pleg_failures = FailureLog(log, "pleg relist")

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.cfg.root_dir.mkdir(parents=True, exist_ok=True)
        # Like kubelet: keep trying to register until the API server answers (it may start later).
        delay = 0.2
        while not self._stop.is_set():
            try:
                self.node_status.register_node()
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
            (lambda: self.node_status.run(self._stop), "node-status"),
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
            from noded.server import KubeletHost, KubeletServer

            self.server = KubeletServer(
                KubeletHost(
                    node_name=self.cfg.node_name,
                    pods=self.pods,
                    runtime=self.runtime,
                    node_netns_path=self.cfg.node_netns_path,
                    queue_depth=self.queue.len,
                ),
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

    def _resync_all(self) -> None:
        """The CNI network just became ready: every pod waiting for it syncs again."""
        for pod in self.pods.list():
            self.queue.add(names.pod_key(pod))

    def _static_changed(self, key: str, old: dict[str, Any] | None) -> None:
        if old is not None:
            self._deleted[key] = old  # replaced or gone: tear the old static pod down
        self.queue.add(key, urgent=True)

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
        static = self.static_pods.pods.get(key)
        api_pod = self.pods.get(key)
        if static is not None:
            # A static pod runs from its manifest (its own uid), whatever the API holds; the
            # mirror pod only carries its status (kubelet's podManager does the same).
            spod = copy.deepcopy(static)
            if api_pod is not None and is_mirror(api_pod) and not api_pod["metadata"].get("deletionTimestamp"):
                spod["status"] = copy.deepcopy(api_pod.get("status") or {})
            return self.worker.sync_pod(spod)
        if api_pod is not None and is_mirror(api_pod):
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
                self.static_pods.sync()
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
        known = {p["metadata"]["uid"] for p in self.pods.list() if not is_mirror(p)}
        known |= {p["metadata"]["uid"] for p in self.static_pods.pods.values()}
        for sb in self.runtime.list_pod_sandboxes():
            if sb.uid not in known:
                pod = {"metadata": {"name": sb.name, "namespace": sb.namespace, "uid": sb.uid}, "spec": {}}
                log.info("removing orphaned sandbox %s (pod %s/%s is gone)", sb.id, sb.namespace, sb.name)
                self.worker.teardown(pod)

