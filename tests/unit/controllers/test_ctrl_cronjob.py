"""The CronJob controller (plan + sync against the fake cluster) and the ReplicationController
controller (the ReplicaSet controller through its adapter)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from controlplane.api import cron
from controlplane.api.registry import CRONJOBS, JOBS, PODS, REPLICATIONCONTROLLERS
from controlplane.controllers.cronjob import (
    SCHEDULED_TIMESTAMP_ANNOTATION,
    CronJobController,
    plan_cronjob,
)
from controlplane.controllers.replicationcontroller import ReplicationControllerController
from controlplane.controllers.util import format_time, is_controlled_by
from tests.unit.controllers.fake import FakeCluster

CREATED = datetime(2026, 1, 1, tzinfo=UTC)  # FakeClock's start


def cj(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schedule": "*/1 * * * *",
        "concurrencyPolicy": "Allow",
        "suspend": False,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 1,
        "jobTemplate": {
            "metadata": {"labels": {"team": "a"}},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
        },
    }
    base.update(spec)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "hello", "namespace": "default", "uid": "cj-uid",
                     "creationTimestamp": format_time(CREATED)},
        "spec": base,
    }  # fmt: skip


def finished(job: dict[str, Any], ok: bool, at: datetime) -> dict[str, Any]:
    j = dict(job)
    cond = "Complete" if ok else "Failed"
    j["status"] = {"conditions": [{"type": cond, "status": "True"}], "startTime": format_time(at)}
    if ok:
        j["status"]["completionTime"] = format_time(at + timedelta(seconds=5))
    return j


def job(name: str, uid: str, created: datetime = CREATED) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": "default", "uid": uid, "creationTimestamp": format_time(created),
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "hello",
                                          "uid": "cj-uid", "controller": True}]},
        "spec": {},
    }  # fmt: skip


# --- the plan --------------------------------------------------------------------------------


def test_nothing_due_before_the_first_schedule_time() -> None:
    plan = plan_cronjob(cj(), [], CREATED + timedelta(seconds=30))
    assert plan.create is None and plan.status == {}
    assert plan.requeue_after is not None and 30 <= plan.requeue_after < 31


def test_creates_the_job_for_the_most_recent_time() -> None:
    now = CREATED + timedelta(minutes=3, seconds=2)
    plan = plan_cronjob(cj(), [], now)
    scheduled = CREATED + timedelta(minutes=3)
    assert plan.create is not None
    md = plan.create["metadata"]
    assert md["name"] == f"hello-{int(scheduled.timestamp()) // 60}"
    assert md["labels"] == {"team": "a"}
    assert md["annotations"][SCHEDULED_TIMESTAMP_ANNOTATION] == "2026-01-01T00:03:00Z"
    assert md["ownerReferences"][0]["kind"] == "CronJob" and md["ownerReferences"][0]["controller"] is True
    assert plan.create["spec"] == cj()["spec"]["jobTemplate"]["spec"]
    assert plan.status["lastScheduleTime"] == "2026-01-01T00:03:00Z"


def test_scheduled_timestamp_in_the_cronjob_time_zone() -> None:
    plan = plan_cronjob(cj(timeZone="Asia/Tokyo"), [], CREATED + timedelta(minutes=1, seconds=1))
    assert plan.create is not None
    assert plan.create["metadata"]["annotations"][SCHEDULED_TIMESTAMP_ANNOTATION] == "2026-01-01T09:01:00+09:00"


def test_already_run_time_is_not_run_again() -> None:
    now = CREATED + timedelta(minutes=1, seconds=5)
    obj = cj()
    obj["status"] = {"lastScheduleTime": "2026-01-01T00:01:00Z"}
    assert plan_cronjob(obj, [], now).create is None


def test_suspend_and_deletion_create_nothing() -> None:
    now = CREATED + timedelta(minutes=5)
    assert plan_cronjob(cj(suspend=True), [], now).create is None
    deleting = cj()
    deleting["metadata"]["deletionTimestamp"] = format_time(now)
    assert plan_cronjob(deleting, [], now).create is None


def test_starting_deadline_missed() -> None:
    # the controller was away: the 00:05 run is 50s late with a 30s deadline
    now = CREATED + timedelta(minutes=5, seconds=50)
    obj = cj(startingDeadlineSeconds=30)
    obj["status"] = {"lastScheduleTime": "2026-01-01T00:01:00Z"}
    plan = plan_cronjob(obj, [], now)
    assert plan.create is None
    obj["spec"]["startingDeadlineSeconds"] = 60
    plan = plan_cronjob(obj, [], now)
    assert plan.create is not None and plan.status["lastScheduleTime"] == "2026-01-01T00:05:00Z"


def test_forbid_and_replace() -> None:
    now = CREATED + timedelta(minutes=2, seconds=1)
    running = job("hello-old", "j1")
    for policy, creates, deletes in (("Allow", True, []), ("Forbid", False, []), ("Replace", True, ["hello-old"])):
        obj = cj(concurrencyPolicy=policy)
        obj["status"] = {"active": [{"kind": "Job", "name": "hello-old", "uid": "j1"}],
                         "lastScheduleTime": "2026-01-01T00:01:00Z"}  # fmt: skip
        plan = plan_cronjob(obj, [running], now)
        assert (plan.create is not None) == creates, policy
        assert [j["metadata"]["name"] for j in plan.delete] == deletes, policy
        if policy == "Forbid":
            assert ("Normal", "JobAlreadyActive") in [(t, r) for t, r, _ in plan.events]
            assert plan.status["active"][0]["name"] == "hello-old"
        if policy == "Replace":
            assert "active" not in plan.status


def test_finished_jobs_leave_active_and_set_last_successful_time() -> None:
    now = CREATED + timedelta(seconds=30)
    done = finished(job("hello-1", "j1"), ok=True, at=CREATED)
    obj = cj()
    obj["status"] = {"active": [{"name": "hello-1", "uid": "j1"}, {"name": "gone", "uid": "j9"}]}
    plan = plan_cronjob(obj, [done], now)
    assert "active" not in plan.status
    assert plan.status["lastSuccessfulTime"] == "2026-01-01T00:00:05Z"
    reasons = [r for _, r, _ in plan.events]
    assert "SawCompletedJob" in reasons and "MissingJob" in reasons


def test_history_limits_delete_the_oldest() -> None:
    now = CREATED + timedelta(seconds=30)
    oks = [finished(job(f"ok-{i}", f"o{i}"), True, CREATED + timedelta(minutes=i)) for i in range(5)]
    fails = [finished(job(f"bad-{i}", f"b{i}"), False, CREATED + timedelta(minutes=i)) for i in range(3)]
    plan = plan_cronjob(cj(), oks + fails, now)
    assert sorted(j["metadata"]["name"] for j in plan.delete) == ["bad-0", "bad-1", "ok-0", "ok-1"]


def test_unparseable_schedule_is_an_event_not_an_error() -> None:
    plan = plan_cronjob(cj(schedule="not a schedule"), [], CREATED + timedelta(minutes=3))
    assert plan.create is None and [r for _, r, _ in plan.events] == ["UnparseableSchedule"]


# --- the controller against the fake cluster ----------------------------------------------------


def test_sync_creates_one_job_per_schedule_time(cluster: FakeCluster) -> None:
    ctl = CronJobController(cluster.context())
    cluster.seed(CRONJOBS, cj())
    cluster.clock.step(61)
    ctl.sync("default/hello")
    ctl.sync("default/hello")  # a repeated sync makes no second Job
    jobs = cluster.all(JOBS)
    first = CREATED + timedelta(minutes=1)
    assert [j["metadata"]["name"] for j in jobs] == [cron.job_name("hello", first)]
    stored = cluster.obj(CRONJOBS, "hello")
    assert stored is not None
    assert stored["status"]["lastScheduleTime"] == format_time(first)
    assert [r["name"] for r in stored["status"]["active"]] == [jobs[0]["metadata"]["name"]]
    assert is_controlled_by(jobs[0], stored)
    key, delay = cluster.queues["cronjob"].after[-1]
    assert key == "default/hello" and 58 < delay < 60

    # the job completes: it leaves active, lastSuccessfulTime is set
    done = finished(jobs[0], ok=True, at=first)
    cluster.update_status(JOBS, done)
    ctl.sync("default/hello")
    stored = cluster.obj(CRONJOBS, "hello")
    assert stored is not None and "active" not in stored["status"]
    assert stored["status"]["lastSuccessfulTime"] == format_time(first + timedelta(seconds=5))


def test_sync_replace_deletes_the_running_job(cluster: FakeCluster) -> None:
    ctl = CronJobController(cluster.context())
    cluster.seed(CRONJOBS, cj(concurrencyPolicy="Replace"))
    cluster.clock.step(61)
    ctl.sync("default/hello")
    cluster.clock.step(60)
    ctl.sync("default/hello")
    names = [j["metadata"]["name"] for j in cluster.all(JOBS) if not j["metadata"].get("deletionTimestamp")]
    assert names == [cron.job_name("hello", CREATED + timedelta(minutes=2))]


def test_replication_controller_uses_equality_selector(cluster: FakeCluster) -> None:
    ctl = ReplicationControllerController(cluster.context())
    cluster.seed(PODS, {"metadata": {"name": "orphan", "labels": {"app": "web"}}, "spec": {"nodeName": "n"},
                        "status": {"phase": "Running"}})  # fmt: skip
    rc = cluster.seed(REPLICATIONCONTROLLERS, {
        "metadata": {"name": "web"},
        "spec": {"replicas": 3, "selector": {"app": "web"},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
    })  # fmt: skip
    ctl.sync("default/web")
    owned = [p for p in cluster.all(PODS) if is_controlled_by(p, rc)]
    assert len(owned) == 3 and "orphan" in [p["metadata"]["name"] for p in owned]
    refs = [p["metadata"]["ownerReferences"][0] for p in owned]
    assert all(r["kind"] == "ReplicationController" and r["apiVersion"] == "v1" for r in refs)
    ctl.sync("default/web")  # the status counts what the cache has seen: the created pods now too
    stored = cluster.obj(REPLICATIONCONTROLLERS, "web")
    assert stored is not None and stored["status"]["replicas"] == 3
    assert len(cluster.all(PODS)) == 3, "a converged sync creates nothing more"
