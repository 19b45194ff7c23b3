"""The controller-manager: every controller of this package, one shared informer per resource,
behind leader election.

Role: ``run_controller_manager(client, stop, options)`` — what ``kubelab controller-manager`` and
``kubelab controlplane`` run. With leader election (the default), it campaigns for the Lease
``kube-system/kube-controller-manager``; only the leader runs controllers. Losing the lease stops
them all (informers, workers) before anyone else can take over (the elector steps down at
``renew_deadline`` < ``lease_duration``), and a new term starts from a fresh list of everything:
controllers keep no state that a restart could lose (level-triggered), so a take-over never
repeats work — a new leader's ReplicaSet controller sees the pods the old one created.

Order of a term: build controllers (they register handlers) → start informers → wait until all
have synced (acting on a partial cache would e.g. create pods that already exist) → run each
controller's workers → on stop/lost: shut the queues, stop the informers.

Concurrency: one thread per controller's ``run_workers`` (which starts ``workers`` threads), one
per informer, one for events. ``stop`` (process) and ``lost`` (term) are threading.Events.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controlplane.api import errors
from controlplane.api.registry import NAMESPACES
from controlplane.client.controller import run_workers
from controlplane.client.events import EventRecorder
from controlplane.client.informer import Informer
from controlplane.client.leaderelection import LeaderElector
from controlplane.client.rest import ApiClient
from controlplane.client.workqueue import WorkQueue
from controlplane.controllers.base import Controller, ControllerContext, SharedInformers, SystemClock
from controlplane.controllers.util import parse_duration

log = logging.getLogger(__name__)

LEASE_NAMESPACE = "kube-system"
LEASE_NAME = "kube-controller-manager"


def _seconds(v: float | int | str) -> float:
    return float(v) if isinstance(v, int | float) else parse_duration(v)


@dataclass
class ControllerOptions:
    node_monitor_grace_period: float = 40.0
    pod_eviction_timeout: float = 300.0
    node_monitor_period: float = 5.0
    cluster_cidr: str = "10.244.0.0/16"
    node_cidr_mask_size: int = 24
    allocate_node_cidrs: bool = True
    terminated_pod_gc_threshold: int = 12500
    leader_elect: bool = True
    identity: str = field(default_factory=lambda: f"{socket.gethostname()}_{os.getpid()}")
    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0
    # Which controllers to run: "*" = all; "-name" removes one (like --controllers).
    controllers: tuple[str, ...] = ("*",)
    sync_timeout: float = 60.0
    # kube-controller-manager's --root-ca-file: published to every namespace as kube-root-ca.crt
    # (the root-ca-cert-publisher runs only when it is set, as in Kubernetes).
    root_ca_file: str = ""

    def __post_init__(self) -> None:
        for f in (
            "node_monitor_grace_period",
            "pod_eviction_timeout",
            "node_monitor_period",
            "lease_duration",
            "renew_deadline",
            "retry_period",
        ):
            setattr(self, f, _seconds(getattr(self, f)))
        if self.node_monitor_grace_period <= 0:
            raise ValueError("--node-monitor-grace-period must be positive")
        if self.pod_eviction_timeout < 0:
            raise ValueError("--pod-eviction-timeout must not be negative")


def _factories(opts: ControllerOptions) -> dict[str, Callable[[ControllerContext], Controller]]:
    # Imported here so that a broken optional controller cannot stop the module from importing.
    from controlplane.controllers.clusterroleaggregation import ClusterRoleAggregationController
    from controlplane.controllers.cronjob import CronJobController
    from controlplane.controllers.daemonset import DaemonSetController
    from controlplane.controllers.deployment import DeploymentController
    from controlplane.controllers.disruption import DisruptionController
    from controlplane.controllers.endpoints import EndpointsController, EndpointSliceController
    from controlplane.controllers.garbagecollector import GarbageCollector
    from controlplane.controllers.job import JobController
    from controlplane.controllers.namespace import NamespaceController
    from controlplane.controllers.nodeipam import NodeIpamController
    from controlplane.controllers.nodelifecycle import NodeLifecycleController
    from controlplane.controllers.podgc import PodGCController
    from controlplane.controllers.replicaset import ReplicaSetController
    from controlplane.controllers.replicationcontroller import ReplicationControllerController
    from controlplane.controllers.resourcequota import ResourceQuotaController
    from controlplane.controllers.serviceaccount import ServiceAccountController
    from controlplane.controllers.statefulset import StatefulSetController

    f: dict[str, Callable[[ControllerContext], Controller]] = {
        "replicaset": ReplicaSetController,
        "deployment": DeploymentController,
        "daemonset": DaemonSetController,
        "statefulset": StatefulSetController,
        "job": JobController,
        "cronjob": CronJobController,
        "replicationcontroller": ReplicationControllerController,
        "endpoints": EndpointsController,
        "endpointslice": EndpointSliceController,
        "nodelifecycle": lambda ctx: NodeLifecycleController(
            ctx,
            grace_period=opts.node_monitor_grace_period,
            pod_eviction_timeout=opts.pod_eviction_timeout,
            monitor_period=min(opts.node_monitor_period, max(0.2, opts.node_monitor_grace_period / 4)),
        ),
        "namespace": NamespaceController,
        "garbagecollector": GarbageCollector,
        "serviceaccount": ServiceAccountController,
        "podgc": lambda ctx: PodGCController(ctx, terminated_threshold=opts.terminated_pod_gc_threshold),
        "clusterrole-aggregation": ClusterRoleAggregationController,
        "disruption": DisruptionController,
        "resourcequota": ResourceQuotaController,
    }
    if opts.root_ca_file:
        from pathlib import Path

        from controlplane.controllers.rootcacertpublisher import RootCACertPublisher

        root_ca = Path(opts.root_ca_file).read_bytes()
        f["root-ca-cert-publisher"] = lambda ctx: RootCACertPublisher(ctx, root_ca)
    if opts.allocate_node_cidrs:
        f["nodeipam"] = lambda ctx: NodeIpamController(ctx, opts.cluster_cidr, opts.node_cidr_mask_size)
    return f


def enabled(names: tuple[str, ...], all_names: list[str]) -> list[str]:
    """Resolve ``--controllers``: ``*`` for all, ``name`` to add one, ``-name`` to drop one."""
    chosen: list[str] = list(all_names) if "*" in names else []
    for n in names:
        if n == "*":
            continue
        if n.startswith("-"):
            if n[1:] not in all_names:
                raise ValueError(f"unknown controller {n[1:]!r}; known: {', '.join(all_names)}")
            chosen = [c for c in chosen if c != n[1:]]
        elif n not in all_names:
            raise ValueError(f"unknown controller {n!r}; known: {', '.join(all_names)}")
        elif n not in chosen:
            chosen.append(n)
    return chosen


def run_term(client: ApiClient, stop: threading.Event, options: ControllerOptions) -> None:
    """Run every enabled controller until ``stop`` is set (one leadership term)."""
    factories = _factories(options)
    names = enabled(options.controllers, list(factories))
    informers = SharedInformers(lambda res: Informer(client, res))  # type: ignore[arg-type,return-value]
    recorder = EventRecorder(client, "kube-controller-manager", host=options.identity.split("_")[0])
    ctx = ControllerContext(
        client=client,
        informers=informers,
        new_queue=lambda name: WorkQueue[str](name),
        clock=SystemClock(),
        recorder=recorder,
    )
    controllers = [factories[n](ctx) for n in names]
    for inf in informers.all():
        inf.start()  # type: ignore[attr-defined]
    threads: list[threading.Thread] = []
    try:
        for inf in informers.all():
            while not stop.is_set() and not inf.wait_for_sync(0.2):  # type: ignore[attr-defined]
                pass
        if stop.is_set():
            return
        log.info("controller-manager: caches synced; starting %s", ", ".join(names))
        for c in controllers:
            t = threading.Thread(
                target=run_workers,
                args=(c.queue, c.sync_handler, c.workers, stop),
                kwargs={"name": c.name},
                name=f"ctrl-{c.name}",
                daemon=True,
            )
            t.start()
            threads.append(t)
        stop.wait()
    finally:
        for c in controllers:
            c.queue.shutdown()
        for t in threads:
            t.join(timeout=10)
        for inf in informers.all():
            inf.stop()  # type: ignore[attr-defined]
        recorder.close()
        log.info("controller-manager: controllers stopped")


def _ensure_namespace(client: ApiClient, name: str) -> None:
    try:
        client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    except errors.AlreadyExists:
        pass
    except errors.ApiError as e:
        log.debug("namespace %s not ensured: %s", name, e)


def run_controller_manager(client: ApiClient, stop: threading.Event, options: ControllerOptions | None = None) -> None:
    """Run the controller-manager until ``stop`` is set (blocks)."""
    opts = options or ControllerOptions()
    _factories(opts)  # fail fast on bad options, before campaigning
    enabled(opts.controllers, list(_factories(opts)))
    if not opts.leader_elect:
        run_term(client, stop, opts)
        return
    _ensure_namespace(client, LEASE_NAMESPACE)

    def lead(lost: threading.Event) -> None:
        term_stop = threading.Event()

        def watch() -> None:
            while not (stop.is_set() or lost.is_set()):
                stop.wait(0.1) or lost.wait(0.1)
            term_stop.set()

        threading.Thread(target=watch, name="term-watch", daemon=True).start()
        run_term(client, term_stop, opts)

    elector = LeaderElector(
        client,
        LEASE_NAMESPACE,
        LEASE_NAME,
        opts.identity,
        lease_duration=opts.lease_duration,
        renew_deadline=opts.renew_deadline,
        retry_period=opts.retry_period,
        on_started_leading=lead,
        recorder=EventRecorder(client, "kube-controller-manager", host=opts.identity.split("_")[0]),
    )
    elector.run(stop)


def describe(opts: ControllerOptions) -> dict[str, Any]:
    return {"controllers": enabled(opts.controllers, list(_factories(opts))), "leader_elect": opts.leader_elect}
