"""Job controller: run pods to completion.

Role: Kubernetes' job controller (pod counting, no tracking finalizers). Pods are created from the
template with ``generateName: <job>-`` and labels ``job-name``/``controller-uid`` (and their
``batch.kubernetes.io/`` twins), owned by the Job. Template ``restartPolicy`` is Never or OnFailure:
with Never a failed container fails the pod (a new pod is made); with OnFailure the kubelet restarts
containers in place and their restarts count as failures.

``plan_job`` (pure):
- counts: active (not finished, not deleting), succeeded, failed (+ container restarts under
  OnFailure); counts never go down (finished pods may be garbage-collected);
- failed > ``backoffLimit`` (default 6) → condition Failed, reason BackoffLimitExceeded;
  past ``activeDeadlineSeconds`` → Failed, reason DeadlineExceeded; active pods are deleted;
- ``completions`` set: succeeded ≥ completions → Complete; else keep
  min(parallelism, completions − succeeded) active;
- no ``completions`` (work queue): the first success means no new pods; Complete once none are
  active; else keep ``parallelism`` active;
- ``parallelism`` 0 or ``suspend`` → no active pods.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controlplane.api import errors
from controlplane.api.registry import JOBS, PODS
from controlplane.controllers.base import OWNER_INDEX, Controller, ControllerContext, Expectations, OwnedPodEvents
from controlplane.controllers.replicaset import deletion_rank, pod_from_template
from controlplane.controllers.util import (
    Obj,
    format_time,
    get_condition,
    is_deleting,
    is_pod_ready,
    key_of,
    name_of,
    namespace_of,
    parse_time,
    pod_phase,
    set_condition,
    uid_of,
)

log = logging.getLogger(__name__)

DEFAULT_BACKOFF_LIMIT = 6
COMPLETE_MESSAGE = "Reached expected number of succeeded pods"


def job_labels(job: Obj) -> dict[str, str]:
    name, uid = name_of(job), uid_of(job)
    return {
        "job-name": name,
        "controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "batch.kubernetes.io/controller-uid": uid,
    }


def is_finished(job: Obj) -> bool:
    for t in ("Complete", "Failed"):
        c = get_condition(job, t)
        if c is not None and c.get("status") == "True":
            return True
    return False


@dataclass
class JobPlan:
    create: int = 0
    delete: list[Obj] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)


def plan_job(job: Obj, pods: Sequence[Obj], now: datetime) -> JobPlan:
    spec = job.get("spec") or {}
    old = dict(job.get("status") or {})
    status: dict[str, Any] = dict(old)
    status["conditions"] = list(old.get("conditions") or [])
    plan = JobPlan(status=status)
    restart_policy = ((spec.get("template") or {}).get("spec") or {}).get("restartPolicy") or "Never"
    active = [p for p in pods if pod_phase(p) not in ("Succeeded", "Failed") and not is_deleting(p)]
    succeeded = max(int(old.get("succeeded") or 0), sum(1 for p in pods if pod_phase(p) == "Succeeded"))
    failed_pods = sum(1 for p in pods if pod_phase(p) == "Failed")
    if restart_policy == "OnFailure":
        failed_pods += sum(
            int(cs.get("restartCount") or 0)
            for p in pods
            for cs in (p.get("status") or {}).get("containerStatuses") or []
        )
    failed = max(int(old.get("failed") or 0), failed_pods)
    status.update(
        active=len(active), succeeded=succeeded, failed=failed, ready=sum(1 for p in active if is_pod_ready(p))
    )
    if not status.get("startTime") and not spec.get("suspend"):
        status["startTime"] = format_time(now)
    if is_finished(job):
        plan.delete = active
        return plan

    completions = spec.get("completions")
    parallelism = int(spec.get("parallelism", 1) if spec.get("parallelism") is not None else 1)
    backoff_limit = int(
        spec.get("backoffLimit", DEFAULT_BACKOFF_LIMIT)
        if spec.get("backoffLimit") is not None
        else DEFAULT_BACKOFF_LIMIT
    )
    deadline = spec.get("activeDeadlineSeconds")
    started = parse_time(status.get("startTime"))

    def fail(reason: str, message: str) -> JobPlan:
        set_condition(status, "Failed", "True", reason, message, now)
        plan.delete = active
        status["active"] = 0
        return plan

    if failed > backoff_limit:
        return fail("BackoffLimitExceeded", "Job has reached the specified backoff limit")
    if deadline is not None and started is not None and (now - started).total_seconds() >= int(deadline):
        return fail("DeadlineExceeded", "Job was active longer than specified deadline")

    if completions is not None:
        remaining = int(completions) - succeeded
        if remaining <= 0:
            set_condition(
                status, "Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods", now
            )
            status["completionTime"] = format_time(now)
            plan.delete = active
            status["active"] = 0
            return plan
        want = min(parallelism, remaining)
    else:
        if succeeded > 0:
            if not active:
                set_condition(
                    status, "Complete", "True", "CompletionsReached", "Reached expected number of succeeded pods", now
                )
                status["completionTime"] = format_time(now)
                return plan
            want = len(active)  # no new pods after the first success; let the others finish
        else:
            want = parallelism
    if spec.get("suspend"):
        want = 0
    if len(active) < want:
        plan.create = want - len(active)
    elif len(active) > want:
        plan.delete = sorted(active, key=deletion_rank)[: len(active) - want]
    return plan


class JobController(OwnedPodEvents, Controller):
    owner_kind = "Job"

    name = "job"
    workers = 2

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.expectations = Expectations()
        self.job_informer = ctx.informers.get(JOBS)
        self.pod_informer = ctx.informers.get(PODS)
        self.job_informer.add_handler(
            on_add=self.enqueue,
            on_update=lambda _o, n: self.enqueue(n),
            on_delete=lambda o: self.expectations.forget(key_of(o)),
        )
        self.pod_informer.add_handler(on_add=self._pod_added, on_update=self._pod_updated, on_delete=self._pod_deleted)

    def sync(self, key: str) -> None:
        job = self.job_informer.get(key)
        if job is None:
            self.expectations.forget(key)
            return
        if is_deleting(job) or not self.expectations.satisfied(key):
            return
        ns = namespace_of(job)
        pods = self.pod_informer.by_index(OWNER_INDEX, uid_of(job))
        now = self.ctx.clock.now()
        plan = plan_job(job, pods, now)
        if plan.create or plan.delete:
            self.expectations.expect(key, plan.create, (key_of(p) for p in plan.delete))
        template = (job.get("spec") or {}).get("template") or {}
        for i in range(plan.create):
            pod = pod_from_template(template, job, extra_labels=job_labels(job))
            try:
                self.client.create(PODS, pod, namespace=ns)
            except errors.ApiError:
                for _ in range(plan.create - i):
                    self.expectations.creation_observed(key)
                raise
        for p in plan.delete:
            try:
                self.client.delete(PODS, name_of(p), namespace=ns)
            except errors.NotFound:
                self.expectations.deletion_observed(key, key_of(p))
        if plan.status != (job.get("status") or {}):
            new = dict(job)
            new["status"] = plan.status
            try:
                self.client.update_status(JOBS, new)
            except errors.NotFound:
                pass
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        if deadline is not None and not is_finished({"status": plan.status}):
            self.queue.add_after(key, max(0.1, float(deadline) / 10))
