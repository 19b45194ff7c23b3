"""``run_scheduler``: the scheduler as a component — with or without leader election.

With ``leader_elect`` (the default, as kube-scheduler), every copy competes for the Lease
``kube-system/<lease_name>``; only the holder runs a ``Scheduler``. Each leadership term starts a
fresh ``Scheduler`` (fresh informers and snapshot: nothing carried over from a term in which
another copy may have bound pods) and stops it when leadership is lost or ``stop`` is set.
"""

from __future__ import annotations

import logging
import socket
import threading
import uuid
from typing import Any

from controlplane.client.events import EventRecorder
from controlplane.client.leaderelection import LeaderElector
from controlplane.client.rest import ApiClient
from controlplane.scheduler.scheduler import DEFAULT_SCHEDULER_NAME, Scheduler

log = logging.getLogger(__name__)


def default_identity() -> str:
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def run_scheduler(
    client: ApiClient,
    stop: threading.Event,
    *,
    scheduler_name: str = DEFAULT_SCHEDULER_NAME,
    leader_elect: bool = True,
    identity: str | None = None,
    lease_namespace: str = "kube-system",
    lease_name: str | None = None,
    lease_duration: float = 15,
    renew_deadline: float = 10,
    retry_period: float = 2,
    **scheduler_options: Any,
) -> None:
    """Run until ``stop`` is set (blocks)."""
    if not leader_elect:
        Scheduler(client, scheduler_name=scheduler_name, **scheduler_options).run(stop)
        return

    def lead(lost: threading.Event) -> None:
        # While we lead, keep a scheduler running: one that crashes is replaced by a fresh one
        # (fresh caches), rather than leaving the cluster with a leader that schedules nothing.
        while not lost.is_set():
            try:
                Scheduler(client, scheduler_name=scheduler_name, **scheduler_options).run(lost)
            except Exception:
                log.exception("scheduler crashed; starting a fresh one")
                lost.wait(1.0)

    ident = identity or default_identity()
    elector = LeaderElector(
        client,
        lease_namespace,
        lease_name or ("kube-scheduler" if scheduler_name == DEFAULT_SCHEDULER_NAME else scheduler_name),
        ident,
        lease_duration=lease_duration,
        renew_deadline=renew_deadline,
        retry_period=retry_period,
        on_started_leading=lead,
        on_stopped_leading=lambda: log.info("scheduler: stopped leading"),
        recorder=EventRecorder(client, scheduler_name, host=ident.split("_")[0]),
    )
    elector.run(stop)
