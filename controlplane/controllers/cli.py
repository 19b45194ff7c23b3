"""``kubelab controller-manager``: run every controller against an API server.

    kubelab controller-manager --kubeconfig K [--leader-elect|--no-leader-elect]
        [--node-monitor-grace-period 40s] [--pod-eviction-timeout 300s]
        [--cluster-cidr 10.244.0.0/16] [--node-cidr-mask-size 24] [--controllers '*,-podgc']

Durations are Go durations (``5s``, ``1m30s``) or plain seconds. Bad flags are refused before
anything starts. SIGTERM/SIGINT stop it cleanly (the lease is released so a peer takes over).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from controlplane.controllers.util import parse_duration

log = logging.getLogger(__name__)


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", required=True, help="kubeconfig of the API server to use")
    p.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="campaign for the kube-system/kube-controller-manager Lease (default on)",
    )
    p.add_argument("--leader-elect-lease-duration", type=_duration, default=15.0)
    p.add_argument("--leader-elect-renew-deadline", type=_duration, default=10.0)
    p.add_argument("--leader-elect-retry-period", type=_duration, default=2.0)
    p.add_argument("--node-monitor-grace-period", type=_duration, default=40.0)
    p.add_argument("--node-monitor-period", type=_duration, default=5.0)
    p.add_argument("--pod-eviction-timeout", type=_duration, default=300.0)
    p.add_argument("--cluster-cidr", default="10.244.0.0/16")
    p.add_argument("--node-cidr-mask-size", type=int, default=24)
    p.add_argument("--allocate-node-cidrs", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--terminated-pod-gc-threshold", type=int, default=12500)
    p.add_argument("--controllers", default="*", help="comma-separated: '*' all, 'name' add, '-name' drop")
    p.add_argument("--identity", default="", help="leader election identity (default host_pid)")
    p.add_argument("--root-ca-file", default="", help="CA published to every namespace as ConfigMap kube-root-ca.crt")


def options_from_args(args: argparse.Namespace) -> Any:
    from controlplane.controllers.manager import ControllerOptions, _factories, enabled

    kw: dict[str, Any] = dict(
        node_monitor_grace_period=args.node_monitor_grace_period,
        node_monitor_period=args.node_monitor_period,
        pod_eviction_timeout=args.pod_eviction_timeout,
        cluster_cidr=args.cluster_cidr,
        node_cidr_mask_size=args.node_cidr_mask_size,
        allocate_node_cidrs=args.allocate_node_cidrs,
        terminated_pod_gc_threshold=args.terminated_pod_gc_threshold,
        leader_elect=args.leader_elect,
        lease_duration=args.leader_elect_lease_duration,
        renew_deadline=args.leader_elect_renew_deadline,
        retry_period=args.leader_elect_retry_period,
        controllers=tuple(c.strip() for c in args.controllers.split(",") if c.strip()),
    )
    if args.identity:
        kw["identity"] = args.identity
    if args.root_ca_file:
        kw["root_ca_file"] = args.root_ca_file
    opts = ControllerOptions(**kw)
    enabled(opts.controllers, list(_factories(opts)))
    if opts.allocate_node_cidrs:
        from controlplane.controllers.nodeipam import CidrSet

        CidrSet(opts.cluster_cidr, opts.node_cidr_mask_size)  # validates both flags
    return opts


def run(args: argparse.Namespace) -> int:
    from controlplane.client.rest import ApiClient
    from controlplane.controllers.manager import run_controller_manager

    try:
        opts = options_from_args(args)
    except ValueError as e:
        log.error("controller-manager: %s", e)
        return 2
    client = ApiClient.from_kubeconfig(args.kubeconfig, user_agent="kube-controller-manager/kubelab")
    stop = threading.Event()

    def on_signal(_sig: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    log.info(
        "controller-manager starting (identity %s, leader election %s)",
        opts.identity,
        "on" if opts.leader_elect else "off",
    )
    try:
        run_controller_manager(client, stop, opts)
    finally:
        client.close()
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("controller-manager", help="run the controllers (ReplicaSet, Deployment, …)")
    add_flags(p)
    p.set_defaults(func=run)
