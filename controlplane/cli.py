"""``kubelab controlplane``: the composition root of the control plane, like ``k3s server``.

Role: one process that builds the three control-plane components with plain imports and explicit
options: the API server (``controlplane.apiserver.cli.build``), then, once it serves, the
scheduler (``controlplane.scheduler.run.run_scheduler``) and the controller-manager
(``controlplane.controllers.manager.run_controller_manager`` with a ``ControllerOptions``). Each
talks to the API server over HTTPS with its own identity (``scheduler.kubeconfig``,
``controller-manager.kubeconfig``), exactly as from another machine, so this module is the only
place that knows the three run together. ``kubelab apiserver`` stays the API server alone.

Invariants: every option reaches its component by name (a renamed option is a type error, not a
silently dropped keyword); the scheduler and controllers are elected by default, so a second
``kubelab controlplane`` on the same etcd waits as a hot standby (issue 3).

Concurrency: the API server's event loop runs in the main thread; the scheduler and the
controller-manager each run in a daemon thread started from the server's startup hook, and stop on
one shared ``threading.Event`` set when the server begins shutting down (before watches end).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import threading
import uuid
from pathlib import Path
from typing import Any

from controlplane.apiserver.cli import add_server_flags, build, make_server, parse_duration
from controlplane.client.rest import ApiClient
from controlplane.controllers.manager import ControllerOptions, run_controller_manager
from controlplane.scheduler.run import run_scheduler

log = logging.getLogger(__name__)


def controller_options(args: argparse.Namespace, root_ca_file: Path) -> ControllerOptions:
    """The controller-manager's options from ``kubelab controlplane``'s flags."""
    opts = ControllerOptions(
        node_monitor_grace_period=args.node_monitor_grace_period,
        pod_eviction_timeout=args.pod_eviction_timeout,
        cluster_cidr=args.cluster_cidr,
        node_cidr_mask_size=args.node_cidr_mask_size,
        leader_elect=args.leader_elect,
        # the CA the root-ca-cert-publisher puts into every namespace's kube-root-ca.crt
        root_ca_file=str(root_ca_file),
    )
    if args.hostname_override:  # kube-controller-manager's identity: <hostname>_<unique>
        opts = dataclasses.replace(opts, identity=f"{args.hostname_override}_{os.getpid()}")
    return opts


def run_controlplane(args: argparse.Namespace) -> int:
    """The API server plus the scheduler and controller-manager in this process (blocks)."""
    stop = threading.Event()
    threads: list[threading.Thread] = []
    started = threading.Event()  # the server serves: the components may connect

    def start_components() -> None:
        # From the server's startup hook (its event loop): only start threads here.
        started.set()

    config, store, pki = build(args, on_started=start_components)
    copts = controller_options(args, pki.ca_cert)  # bad options fail before serving

    def runner() -> None:
        started.wait()
        if stop.is_set():
            return
        sched_client = ApiClient.from_kubeconfig(str(pki.scheduler_kubeconfig))
        ident = f"{args.hostname_override}_{uuid.uuid4()}" if args.hostname_override else None
        cm_client = ApiClient.from_kubeconfig(str(pki.controller_manager_kubeconfig))
        for name, target, target_args, kwargs in (
            ("scheduler", run_scheduler, (sched_client, stop), {"leader_elect": args.leader_elect, "identity": ident}),
            ("controller-manager", run_controller_manager, (cm_client, stop, copts), {}),
        ):
            t = threading.Thread(target=target, args=target_args, kwargs=kwargs, name=name, daemon=True)
            t.start()
            threads.append(t)

    threading.Thread(target=runner, name="components", daemon=True).start()

    def on_shutdown() -> None:
        stop.set()
        started.set()  # a runner still waiting gives up

    try:
        make_server(config, on_shutdown=on_shutdown).run()
    finally:
        on_shutdown()
        for t in threads:
            t.join(timeout=5)
        store.close()
    return 0


def register(subparsers: Any) -> None:
    c = subparsers.add_parser("controlplane", help="API server + scheduler + controller-manager in one process")
    add_server_flags(c)
    c.add_argument("--node-monitor-grace-period", type=parse_duration, default=40.0)
    c.add_argument("--pod-eviction-timeout", type=parse_duration, default=300.0)
    c.add_argument("--cluster-cidr", default="10.244.0.0/16")
    c.add_argument("--node-cidr-mask-size", type=int, default=24)
    c.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="scheduler and controllers take the kube-scheduler / kube-controller-manager Leases first (default: on)",
    )
    c.add_argument(
        "--hostname-override",
        default="",
        help="the host name in the scheduler's and controller-manager's Lease identities (default: this "
        "machine's); the one-machine HA lab gives each control plane its node name, kl-cpN",
    )
    c.set_defaults(func=run_controlplane)
