"""``PodWorker.sync_pod``: carry out ``compute_pod_actions`` for one pod (kubelet's ``SyncPod``).

Steps of ``sync_pod`` (the ``# Step N`` markers below):
 1. observe the runtime (sandboxes and containers by pod uid) and noded's notes;
 2. compute the actions (pure, ``podsync.compute_pod_actions``);
 3. kill the pod when asked: preStop hooks, SIGTERM, grace, SIGKILL for every container, then the
    sandbox is stopped, CNI DEL, netns removed; a deleted pod is then finalised (pod dir removed,
    API object deleted with gracePeriodSeconds=0), a terminal one gets its final status;
 4. create the sandbox: netns add, CNI ADD (result cached), pause container; any failure undoes
    what was done (CNI DEL even after a failed ADD, netns removed), emits FailedCreatePodSandBox
    and retries with back-off;
 5. kill unwanted containers (liveness failure, spec change, old sandbox) and remove old exits;
 6. start containers: ensure the image (Pulling/Pulled; ErrImagePull → ImagePullBackOff), volumes
    and env, create + start (Created/Started; a failed start is recorded with its reason);
 7. write the status (only noded writes pod status) and return when to sync again.

Concurrency: one pod is never synced by two threads at once (the agent's work queue guarantees
it); different pods are synced in parallel, so everything shared here is thread-safe.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from controlplane.api.defaults import image_pull_policy
from noded import names
from noded.images.credentials import PullSecrets
from noded.images.store import Image, ImageError, ImageStore
from noded.network.cni import Cni, CniError, CniRuntimeConf
from noded.network.netns import Netns
from noded.podsync import (
    Observed,
    PodActions,
    StartAction,
    compute_pod_actions,
    compute_pod_status,
    pull_backoff_remaining,
)
from noded.probes import ProbeManager, run_probe
from noded.runtime import oci
from noded.runtime.interface import (
    ContainerConfig,
    ContainerRuntime,
    ContainerState,
    RuntimeOpError,
    SandboxConfig,
    SandboxState,
)
from noded.volumes import (
    TokenManager,
    VolumeError,
    container_mounts,
    prepare_volumes,
    remove_pod_dir,
    write_pod_files,
)

log = logging.getLogger(__name__)

POD_IP_LABEL = "io.kubelab.pod-ip"
NETNS_LABEL = "io.kubelab.netns"


class PodApi(Protocol):
    """What the pod worker needs from the cluster (the agent implements it with the API client)."""

    def update_status(self, pod: dict[str, Any], status: dict[str, Any]) -> None: ...
    def delete_pod(self, pod: dict[str, Any]) -> None: ...
    def event(self, pod: dict[str, Any], type_: str, reason: str, message: str) -> None: ...
    def get_object(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...
    def services(self) -> list[dict[str, Any]]: ...


@dataclass
class WorkerConfig:
    node_name: str
    node_ip: str
    root_dir: Path
    log_root: Path
    netns_prefix: str = ""
    cluster_dns: str = "10.96.0.10"
    cluster_domain: str = "cluster.local"
    backoff_base: float = 10.0
    backoff_cap: float = 300.0
    sandbox_retry: float = 2.0
    pause_image: str = ""  # empty: the runtime's built-in pause
    node_netns_path: str = ""  # probes connect from here when noded runs outside the node netns


@dataclass
class PodNotes:
    """In-memory facts about a pod that the runtime does not hold."""

    waiting: dict[str, tuple[str, str]] = field(default_factory=dict)
    image_failures: dict[str, tuple[int, float]] = field(default_factory=dict)  # image -> (count, last)
    image_errors: dict[str, str] = field(default_factory=dict)  # image -> last pull error
    sandbox_error: str = ""
    sandbox_failures: int = 0
    last_status: dict[str, Any] | None = None


class PodWorker:
    def __init__(
        self,
        cfg: WorkerConfig,
        runtime: ContainerRuntime,
        images: ImageStore | None,
        cni: Cni,
        netns: Netns,
        api: PodApi,
        *,
        on_change: Callable[[str], None] = lambda key: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.runtime = runtime
        self.images = images
        self.cni = cni
        self.netns = netns
        self.api = api
        self.clock = clock
        self.probes = ProbeManager(runtime, on_change, self._on_unhealthy, cfg.node_netns_path)
        self._pods_by_key: dict[str, dict[str, Any]] = {}
        self._notes: dict[str, PodNotes] = {}
        self._lock = threading.Lock()
        self._killers = ThreadPoolExecutor(max_workers=16, thread_name_prefix="kill")
        self.started_at = clock()
        # ServiceAccount tokens of projected volumes, through the API's TokenRequest (bound to the pod).
        self.tokens = TokenManager(getattr(api, "request_token", None), clock=clock)

    # ---- helpers ---------------------------------------------------------------------------

    def notes(self, uid: str) -> PodNotes:
        with self._lock:
            return self._notes.setdefault(uid, PodNotes())

    def _on_unhealthy(self, key: str, name: str, kind: str, msg: str) -> None:
        pod = self._pods_by_key.get(key)
        if pod is not None:
            self.api.event(pod, "Warning", "Unhealthy", f"{kind.capitalize()} probe failed: {msg}")

    def pod_dir(self, uid: str) -> Path:
        return self.cfg.root_dir / "pods" / uid

    def observe(self, pod: Mapping[str, Any]) -> Observed:
        uid = pod["metadata"]["uid"]
        sandboxes = self.runtime.list_pod_sandboxes(uid)
        containers = [c for sb in sandboxes for c in self.runtime.list_containers(sb.id)]
        key = names.pod_key(dict(pod))
        pst = self.probes.state(key)
        notes = self.notes(uid)
        ready_sb = max((s for s in sandboxes if s.state == SandboxState.READY), key=lambda s: s.attempt, default=None)
        return Observed(
            sandboxes=sandboxes,
            containers=containers,
            liveness_failed=pst.liveness_failed,
            ready=pst.ready,
            started=pst.started,
            waiting=dict(notes.waiting),
            pod_ip=ready_sb.labels.get(POD_IP_LABEL, "") if ready_sb else "",
            sandbox_error=notes.sandbox_error,
        )

    # ---- the sync --------------------------------------------------------------------------

    def sync_pod(self, pod: dict[str, Any]) -> float | None:
        """Converge one pod; return seconds until it should be synced again (None: on change only)."""
        key = names.pod_key(pod)
        uid = pod["metadata"]["uid"]
        self._pods_by_key[key] = pod
        # Step 1: observe.
        obs = self.observe(pod)
        # Step 2: compute.
        acts = self._compute(pod, obs)
        # Step 3: kill the pod (deletion or terminal).
        if acts.kill_pod or acts.finalize or acts.terminal_phase:
            if acts.kill_pod:
                self.kill_pod(pod, obs, reason="Killing")
            if acts.finalize:
                self.teardown(pod)
                self.probes.forget(key)
                self._write_status(pod, self.observe(pod), terminal=pod.get("status", {}).get("phase"))
                with contextlib.suppress(Exception):
                    self.api.delete_pod(pod)
                with self._lock:
                    self._notes.pop(uid, None)
                self._pods_by_key.pop(key, None)
                return None
            self._write_status(pod, self.observe(pod), terminal=acts.terminal_phase)
            return None
        # Step 4: sandbox.
        if acts.create_sandbox:
            try:
                self.create_sandbox(pod, obs, acts.sandbox_attempt)
            except (CniError, RuntimeOpError, OSError) as exc:
                notes = self.notes(uid)
                notes.sandbox_failures += 1
                notes.sandbox_error = f"Failed to create pod sandbox: {exc}"
                self.api.event(pod, "Warning", "FailedCreatePodSandBox", notes.sandbox_error)
                self._write_status(pod, self.observe(pod))
                return float(min(self.cfg.sandbox_retry * 2 ** (notes.sandbox_failures - 1), 60.0))
            notes = self.notes(uid)
            notes.sandbox_error, notes.sandbox_failures = "", 0
            obs = self.observe(pod)
            acts = self._compute(pod, obs)
        # Step 5: kill unwanted containers; remove superseded exited instances.
        self._kill_containers(pod, obs, acts)
        for cid in acts.remove:
            with contextlib.suppress(RuntimeOpError):
                self.runtime.remove_container(cid)
        # Step 6: start containers.
        retry: list[float] = list(acts.backoff.values())
        notes = self.notes(uid)
        for name, remaining in acts.backoff.items():
            notes.waiting[name] = (
                "CrashLoopBackOff",
                f"back-off {_fmt_s(remaining)} restarting failed container={name} pod={pod['metadata']['name']}"
                f"_{pod['metadata'].get('namespace', 'default')}({uid})",
            )
        for name in list(notes.waiting):
            if notes.waiting[name][0] == "CrashLoopBackOff" and name not in acts.backoff:
                del notes.waiting[name]
        if acts.backoff:
            for name in acts.backoff:
                self.api.event(
                    pod,
                    "Warning",
                    "BackOff",
                    f"Back-off restarting failed container {name} in pod {pod['metadata']['name']}",
                )
        if acts.sandbox_id and acts.start:
            retry += self._start_containers(pod, acts, obs)
        if acts.sandbox_id:
            retry += self._refresh_tokens(pod)
        # Step 7: status; tell the caller when to look again.
        obs = self.observe(pod)
        running = {c.name: c.id for c in obs.containers if c.state == ContainerState.RUNNING}
        # Containers started before this noded process (it was restarted) keep the readiness the
        # API shows until probed again; new ones start not ready / not started.
        preexisting = {c.id for c in obs.containers if c.started_at and c.started_at < self.started_at}
        self.probes.sync(key, pod, running, obs.pod_ip, preexisting)
        pst = self.probes.state(key)
        obs.ready, obs.started, obs.liveness_failed = pst.ready, pst.started, pst.liveness_failed
        self._write_status(pod, obs)
        return min(retry) + 0.01 if retry else None

    def _compute(self, pod: dict[str, Any], obs: Observed) -> PodActions:
        return compute_pod_actions(
            pod, obs, now=self.clock(), backoff_base=self.cfg.backoff_base, backoff_cap=self.cfg.backoff_cap
        )

    # ---- status ----------------------------------------------------------------------------

    def _write_status(self, pod: dict[str, Any], obs: Observed, terminal: str | None = None) -> None:
        status = compute_pod_status(pod, obs, host_ip=self.cfg.node_ip, terminal_phase=terminal, now=self.clock())
        old = pod.get("status") or {}
        merged = {**old, **status}
        notes = self.notes(pod["metadata"]["uid"])
        if _same_status(notes.last_status, merged) and _same_status(old, merged):
            return
        notes.last_status = merged
        try:
            self.api.update_status(pod, merged)
        except Exception as exc:  # the next sync writes it again
            log.warning("status update for %s failed: %s", names.pod_key(pod), exc)
        pod["status"] = merged

    # ---- sandbox ---------------------------------------------------------------------------

    def _cni_conf(self, pod: Mapping[str, Any], sandbox_id: str, netns_path: str) -> CniRuntimeConf:
        md = pod["metadata"]
        return CniRuntimeConf(
            container_id=sandbox_id,
            netns=netns_path,
            ifname="eth0",
            args={
                "K8S_POD_NAMESPACE": md.get("namespace", "default"),
                "K8S_POD_NAME": md["name"],
                "K8S_POD_INFRA_CONTAINER_ID": sandbox_id,
                "K8S_POD_UID": md["uid"],
            },
        )

    def create_sandbox(self, pod: dict[str, Any], obs: Observed, attempt: int) -> str:
        md = pod["metadata"]
        ns, name, uid = md.get("namespace", "default"), md["name"], md["uid"]
        # Old sandboxes (dead pause, host reboot) go first: their containers, network and netns.
        for sb in obs.sandboxes:
            self._teardown_sandbox(pod, sb.id, sb.netns_path)
        sid = names.sandbox_id(ns, name, uid, attempt)
        netns_name = names.netns_name(ns, name, uid, self.cfg.netns_prefix)
        netns_path = self.netns.path(netns_name)
        # A netns left by a crash between "netns add" and "run sandbox" is re-made from scratch.
        self.netns.delete(netns_name)
        self.netns.create(netns_name)
        undo: list[Callable[[], None]] = [lambda: self.netns.delete(netns_name)]
        conf = self._cni_conf(pod, sid, netns_path)
        try:
            # CNI DEL must follow every ADD, even a failed one (cni.md §2.3).
            undo.append(lambda: self._cni_del(conf))
            net = self.cni.add(conf)
            pod_files = write_pod_files(pod, self.pod_dir(uid), net.ip, self.cfg.cluster_dns, self.cfg.cluster_domain)
            del pod_files
            pause_layers: list[str] = []
            pause_config: dict[str, Any] = {}
            if self.cfg.pause_image and self.images is not None:
                img = self.images.ensure(self.cfg.pause_image, "IfNotPresent")
                pause_layers = [str(p) for p in self.images.rootfs_layers(img)]
                pause_config = img.config
            sid = self.runtime.run_pod_sandbox(
                SandboxConfig(
                    name=name,
                    namespace=ns,
                    uid=uid,
                    attempt=attempt,
                    hostname=(pod.get("spec", {}).get("hostname") or name)[:63],
                    netns_path=netns_path,
                    log_dir=str(self._log_dir(pod)),
                    labels={POD_IP_LABEL: net.ip, NETNS_LABEL: netns_name},
                    pause_layers=pause_layers,
                    pause_config=pause_config,
                )
            )
        except BaseException:
            for fn in reversed(undo):
                with contextlib.suppress(Exception):
                    fn()
            raise
        log.info("pod %s/%s: sandbox %s ready, netns %s, IP %s", ns, name, sid, netns_name, net.ip)
        return sid

    def _cni_del(self, conf: CniRuntimeConf) -> None:
        try:
            self.cni.delete(conf)
        except CniError as exc:
            log.warning("CNI DEL for %s failed: %s", conf.container_id, exc)
            raise

    def _teardown_sandbox(self, pod: Mapping[str, Any], sandbox_id: str, netns_path: str) -> None:
        """Stop a sandbox and everything in it, then CNI DEL and remove its netns (idempotent)."""
        with contextlib.suppress(RuntimeOpError):
            self.runtime.stop_pod_sandbox(sandbox_id)
        # CNI_NETNS only while the namespace exists (after a reboot it is gone; DEL still runs).
        path = netns_path if self.netns.exists(Path(netns_path).name) else ""
        with contextlib.suppress(CniError):
            self.cni.delete(self._cni_conf(pod, sandbox_id, path))
        self.netns.delete(Path(netns_path).name)

    def teardown(self, pod: dict[str, Any]) -> None:
        """Everything of a deleted pod: sandboxes (with containers, network, netns), pod dir, logs."""
        uid = pod["metadata"]["uid"]
        for sb in self.runtime.list_pod_sandboxes(uid):
            self._teardown_sandbox(pod, sb.id, sb.netns_path)
            with contextlib.suppress(RuntimeOpError):
                self.runtime.remove_pod_sandbox(sb.id)
        md = pod["metadata"]
        netns_name = names.netns_name(md.get("namespace", "default"), md["name"], uid, self.cfg.netns_prefix)
        self.netns.delete(netns_name)
        remove_pod_dir(self.pod_dir(uid))
        self.tokens.forget(uid)
        import shutil

        shutil.rmtree(self._log_dir(pod), ignore_errors=True)

    def _log_dir(self, pod: Mapping[str, Any]) -> Path:
        md = pod["metadata"]
        return Path(names.pod_log_dir(str(self.cfg.log_root), md.get("namespace", "default"), md["name"], md["uid"]))

    # ---- killing ---------------------------------------------------------------------------

    def _grace(self, pod: Mapping[str, Any]) -> float:
        md, spec = pod.get("metadata", {}), pod.get("spec", {})
        g = md.get("deletionGracePeriodSeconds")
        if g is None:
            g = spec.get("terminationGracePeriodSeconds", 30)
        return float(g)

    def _kill_one(self, pod: Mapping[str, Any], cid: str, name: str, grace: float, obs: Observed) -> None:
        spec_c: Mapping[str, Any] = next(
            (c for c in pod.get("spec", {}).get("containers", []) if c["name"] == name), {}
        )
        start = time.monotonic()
        pre = (spec_c.get("lifecycle") or {}).get("preStop")
        if pre:
            # preStop runs inside the grace period; what it uses is not given again to SIGTERM.
            probe = {**pre, "timeoutSeconds": max(grace, 1)}
            if "httpGet" in pre or "exec" in pre or "tcpSocket" in pre:
                run_probe(probe, spec_c, cid, obs.pod_ip, self.runtime, self.cfg.node_netns_path)
            elif "sleep" in pre:
                time.sleep(min(float(pre["sleep"].get("seconds", 0)), grace))
        left = max(grace - (time.monotonic() - start), 0.0)
        self.runtime.stop_container(cid, left)

    def _kill_containers(self, pod: dict[str, Any], obs: Observed, acts: PodActions) -> None:
        if not acts.kill:
            return
        grace = self._grace(pod)
        futures = []
        for k in acts.kill:
            self.api.event(pod, "Normal", "Killing", f"Stopping container {k.name}")
            futures.append(self._killers.submit(self._kill_one, pod, k.container_id, k.name, grace, obs))
        for f in futures:
            with contextlib.suppress(RuntimeOpError):
                f.result()

    def kill_pod(self, pod: dict[str, Any], obs: Observed, reason: str) -> None:
        live = [c for c in obs.containers if c.state in (ContainerState.RUNNING, ContainerState.CREATED)]
        from noded.podsync import KillAction

        self._kill_containers(pod, obs, PodActions(kill=tuple(KillAction(c.id, c.name, reason) for c in live)))
        for sb in obs.sandboxes:
            self._teardown_sandbox(pod, sb.id, sb.netns_path)

    # ---- starting --------------------------------------------------------------------------

    def _start_containers(self, pod: dict[str, Any], acts: PodActions, obs: Observed) -> list[float]:
        retry: list[float] = []
        uid = pod["metadata"]["uid"]
        notes = self.notes(uid)
        try:
            volumes = prepare_volumes(pod, self.pod_dir(uid), self._get, self.tokens)
        except VolumeError as exc:
            for s in acts.start:
                notes.waiting[s.name] = (exc.reason, str(exc))
            self.api.event(pod, "Warning", "FailedMount", str(exc))
            return [2.0]
        pod_files = write_pod_files(pod, self.pod_dir(uid), obs.pod_ip, self.cfg.cluster_dns, self.cfg.cluster_domain)
        for s in acts.start:
            delay = self._start_one(pod, acts.sandbox_id or "", s, volumes, pod_files, obs)
            if delay is not None:
                retry.append(delay)
        return retry

    def _refresh_tokens(self, pod: dict[str, Any]) -> list[float]:
        """Rewrite the pod's volumes when a projected token is due (kubelet: 80% of its lifetime);
        returns when to look again (nothing for pods without token projections)."""
        due = self.tokens.refresh_in(pod)
        if due is None:
            return []
        if due <= 0:
            try:
                prepare_volumes(pod, self.pod_dir(pod["metadata"]["uid"]), self._get, self.tokens)
            except VolumeError as exc:
                self.api.event(pod, "Warning", "FailedMount", str(exc))
                return [10.0]
            due = self.tokens.refresh_in(pod) or 0.0
        return [max(due, 1.0)]

    def _get(self, kind: str, ns: str, name: str) -> dict[str, Any] | None:
        return self.api.get_object(kind, ns, name)

    def _start_one(
        self,
        pod: dict[str, Any],
        sid: str,
        s: StartAction,
        volumes: Mapping[str, str],
        pod_files: Mapping[str, str],
        obs: Observed,
    ) -> float | None:
        md = pod["metadata"]
        uid = md["uid"]
        notes = self.notes(uid)
        specs = (pod["spec"].get("initContainers") or []) if s.init else pod["spec"]["containers"]
        c = next(x for x in specs if x["name"] == s.name)
        image_ref = c.get("image", "")
        img = None
        if self.images is not None:
            img, wait = self._ensure_image(pod, s.name, image_ref, c.get("imagePullPolicy"))
            if img is None:
                return wait
        # Process, env and mounts.
        try:
            svc_env = (
                oci.service_env(self.api.services(), md.get("namespace", "default"))
                if pod["spec"].get("enableServiceLinks", True)
                else {}
            )
            refs = self._env_refs(pod, c)
            env = oci.resolve_env(
                pod, c, (img.config.get("config") or {}).get("Env") or [] if img else [], svc_env, refs
            )
            argv, cwd = (
                oci.resolve_process(c, img.config if img else {"config": {}}, env)
                if img
                else (list(c.get("command") or []) + list(c.get("args") or []), c.get("workingDir") or "/")
            )
            if not argv:
                raise oci.SpecError(f"container {s.name!r}: no command specified")
            mounts = container_mounts(c, volumes, pod_files)
        except (oci.SpecError, VolumeError) as exc:
            notes.waiting[s.name] = ("CreateContainerConfigError", str(exc))
            self.api.event(pod, "Warning", "Failed", f"Error: {exc}")
            return 5.0
        log_path = names.container_log_path(
            str(self.cfg.log_root), md.get("namespace", "default"), md["name"], uid, s.name, s.attempt
        )
        labels = {names.CONTAINER_HASH: names.container_hash(c)}
        if s.init:
            labels[names.INIT_CONTAINER] = "true"
        cfg = ContainerConfig(
            name=s.name,
            attempt=s.attempt,
            image=image_ref,
            image_id=img.status_image_id if img else "",
            argv=argv,
            env=env,
            working_dir=cwd,
            mounts=mounts,
            log_path=log_path,
            labels=labels,
            container=c,
            pod=pod,
            layers=[str(p) for p in self.images.rootfs_layers(img)] if img and self.images else [],
            image_config=img.config if img else {},
        )
        try:
            cid = self.runtime.create_container(sid, cfg)
        except RuntimeOpError as exc:
            notes.waiting[s.name] = (exc.reason, str(exc))
            self.api.event(pod, "Warning", "Failed", f"Error: {exc}")
            return 5.0
        notes.waiting.pop(s.name, None)
        self.api.event(pod, "Normal", "Created", f"Created container {s.name}")
        try:
            self.runtime.start_container(cid)
        except RuntimeOpError as exc:
            self.api.event(pod, "Warning", "Failed", f"Error: failed to start container {s.name!r}: {exc}")
            return None
        self.api.event(pod, "Normal", "Started", f"Started container {s.name}")
        return None

    def _ensure_image(
        self, pod: dict[str, Any], name: str, image_ref: str, policy: str | None
    ) -> tuple[Image | None, float]:
        """The container's image, pulled as its policy says; or None and when to come back.

        Static pods are not defaulted by the API server, so a missing policy gets the API's default
        (``controlplane.api.defaults.image_pull_policy``, the one home of that rule).
        """
        assert self.images is not None
        notes = self.notes(pod["metadata"]["uid"])
        policy = policy or image_pull_policy(image_ref)
        fails, last = notes.image_failures.get(image_ref, (0, 0.0))
        wait = pull_backoff_remaining(fails, last, self.clock(), self.cfg.backoff_base, self.cfg.backoff_cap)
        if wait > 0:
            # Between attempts the container waits in ImagePullBackOff, keeping the reason.
            notes.waiting[name] = (
                "ImagePullBackOff",
                f'Back-off pulling image "{image_ref}": {notes.image_errors.get(image_ref, "")}',
            )
            return None, wait
        # Read only if the registry is asked; a missing secret is an event, as in kubelet.
        secrets = PullSecrets(
            pod,
            self.api.get_object,
            lambda msg: self.api.event(pod, "Warning", "FailedToRetrieveImagePullSecret", msg),
        )
        try:
            if self.images.get(image_ref) is None or policy == "Always":
                self.api.event(pod, "Normal", "Pulling", f'Pulling image "{image_ref}"')
                t0 = time.monotonic()
                img = self.images.ensure(image_ref, policy, secrets)
                self.api.event(
                    pod, "Normal", "Pulled", f'Successfully pulled image "{image_ref}" in {time.monotonic() - t0:.3f}s'
                )
            else:
                img = self.images.ensure(image_ref, policy, secrets)
            notes.image_failures.pop(image_ref, None)
        except ImageError as exc:
            # kubelet backs off failed pulls only: Never with no image, or a bad name, just waits.
            if exc.reason == "ErrImagePull":
                notes.image_failures[image_ref] = (fails + 1, self.clock())
            notes.image_errors[image_ref] = f"{exc.reason}: {exc}"
            notes.waiting[name] = (exc.reason, str(exc))
            self.api.event(pod, "Warning", "Failed", f'Failed to pull image "{image_ref}": {exc}')
            self.api.event(pod, "Warning", "Failed", f"Error: {exc.reason}")
            # Come back soon to show ImagePullBackOff; the next pull waits out the back-off.
            return None, min(1.0, self.cfg.backoff_base)
        self.images.touch(img.ref)
        return img, 0.0

    def _env_refs(self, pod: Mapping[str, Any], c: Mapping[str, Any]) -> dict[tuple[str, str, str], str]:
        """Fetch the configMaps/secrets the container's env refers to."""
        import base64

        ns = pod["metadata"].get("namespace", "default")
        wanted: set[tuple[str, str]] = set()
        for e in c.get("env") or []:
            vf = e.get("valueFrom") or {}
            if "configMapKeyRef" in vf:
                wanted.add(("configMap", vf["configMapKeyRef"]["name"]))
            if "secretKeyRef" in vf:
                wanted.add(("secret", vf["secretKeyRef"]["name"]))
        for src in c.get("envFrom") or []:
            if "configMapRef" in src:
                wanted.add(("configMap", src["configMapRef"]["name"]))
            if "secretRef" in src:
                wanted.add(("secret", src["secretRef"]["name"]))
        refs: dict[tuple[str, str, str], str] = {}
        for kind, name in wanted:
            obj = self.api.get_object(kind, ns, name)
            if obj is None:
                continue
            refs[(kind, name, "")] = ""
            for k, v in (obj.get("data") or {}).items():
                refs[(kind, name, k)] = base64.b64decode(v).decode(errors="replace") if kind == "secret" else str(v)
        return {k: v for k, v in refs.items() if k[2] or True}

    def close(self) -> None:
        self.probes.stop_all()
        self._killers.shutdown(wait=False)


def _fmt_s(seconds: float) -> str:
    s = round(seconds)
    return f"{s // 60}m{s % 60}s" if s >= 60 else f"{s}s"


def _same_status(a: Mapping[str, Any] | None, b: Mapping[str, Any]) -> bool:
    return a is not None and dict(a) == dict(b)
