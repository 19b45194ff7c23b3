"""``kubelab scheduler``: run the scheduler against an API server (kube-scheduler's flags, trimmed)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from typing import Any

from controlplane.client.kubeconfig import KubeconfigError
from controlplane.client.rest import ApiClient
from controlplane.scheduler.run import run_scheduler
from controlplane.scheduler.scheduler import DEFAULT_SCHEDULER_NAME

log = logging.getLogger(__name__)


def _positive(s: str) -> float:
    try:
        v = float(s.rstrip("s"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a duration in seconds: {s!r}") from e
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {s!r}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", required=True, help="kubeconfig with the API server and credentials")
    p.add_argument("--scheduler-name", default=DEFAULT_SCHEDULER_NAME, help="pods' spec.schedulerName we serve")
    p.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="compete for the kube-system Lease; only the holder schedules",
    )
    p.add_argument("--leader-elect-lease-duration", type=_positive, default=15.0, metavar="SECONDS")
    p.add_argument("--leader-elect-renew-deadline", type=_positive, default=10.0, metavar="SECONDS")
    p.add_argument("--leader-elect-retry-period", type=_positive, default=2.0, metavar="SECONDS")
    p.add_argument("--identity", default=None, help="leader-election identity (default: host_uuid)")
    p.add_argument(
        "--percentage-of-nodes-to-score",
        type=int,
        default=0,
        help="0 = kube-scheduler's adaptive default (50%% at 100 nodes, down to 5%%)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        client = ApiClient.from_kubeconfig(args.kubeconfig, user_agent="kubelab-scheduler")
    except (KubeconfigError, OSError) as e:
        log.error("%s", e)
        return 2
    if not (args.leader_elect_lease_duration > args.leader_elect_renew_deadline > args.leader_elect_retry_period):
        log.error("need --leader-elect-lease-duration > --leader-elect-renew-deadline > --leader-elect-retry-period")
        return 2
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    run_scheduler(
        client,
        stop,
        scheduler_name=args.scheduler_name,
        leader_elect=args.leader_elect,
        identity=args.identity,
        lease_duration=args.leader_elect_lease_duration,
        renew_deadline=args.leader_elect_renew_deadline,
        retry_period=args.leader_elect_retry_period,
        percentage_of_nodes_to_score=args.percentage_of_nodes_to_score or None,
    )
    client.close()
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("scheduler", help="run the scheduler (binds pods to nodes)")
    add_arguments(p)
    p.set_defaults(func=run)
