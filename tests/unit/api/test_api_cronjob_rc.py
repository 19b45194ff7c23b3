"""CronJob schedules (controlplane.api.cron) and the CronJob/ReplicationController API pieces:
defaults, validation wording, table rows, required status integers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from controlplane.api import cron, defaults, registry, validation
from controlplane.api.tables import to_table

T0 = datetime(2026, 3, 10, 12, 0, 30, tzinfo=UTC)


# --- schedules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "after", "want"),
    [
        ("*/1 * * * *", T0, datetime(2026, 3, 10, 12, 1, tzinfo=UTC)),
        ("*/15 * * * *", T0, datetime(2026, 3, 10, 12, 15, tzinfo=UTC)),
        ("@hourly", T0, datetime(2026, 3, 10, 13, 0, tzinfo=UTC)),
        ("@daily", T0, datetime(2026, 3, 11, 0, 0, tzinfo=UTC)),
        ("@midnight", T0, datetime(2026, 3, 11, 0, 0, tzinfo=UTC)),
        ("@weekly", T0, datetime(2026, 3, 15, 0, 0, tzinfo=UTC)),  # the next Sunday
        ("@monthly", T0, datetime(2026, 4, 1, 0, 0, tzinfo=UTC)),
        ("@yearly", T0, datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
        ("@annually", T0, datetime(2027, 1, 1, 0, 0, tzinfo=UTC)),
        ("0 9 * * MON-FRI", T0, datetime(2026, 3, 11, 9, 0, tzinfo=UTC)),
        ("30 2 1 JAN ?", T0, datetime(2027, 1, 1, 2, 30, tzinfo=UTC)),
        ("@every 90s", T0, datetime(2026, 3, 10, 12, 2, 0, tzinfo=UTC)),
    ],
)
def test_next_after(schedule: str, after: datetime, want: datetime) -> None:
    assert cron.parse(schedule).next_after(after) == want


def test_next_after_is_strictly_after() -> None:
    on_time = datetime(2026, 3, 10, 13, 0, tzinfo=UTC)
    assert cron.parse("@hourly").next_after(on_time) == on_time + timedelta(hours=1)


def test_time_zone_shifts_the_schedule() -> None:
    # 09:00 in Tokyo is 00:00 UTC; in New York (EDT after 8 March 2026) it is 13:00 UTC
    s = cron.parse("0 9 * * *")
    assert s.next_after(T0, ZoneInfo("Asia/Tokyo")) == datetime(2026, 3, 11, 0, 0, tzinfo=UTC)
    assert s.next_after(T0, ZoneInfo("America/New_York")) == datetime(2026, 3, 10, 13, 0, tzinfo=UTC)


def test_never_firing_schedule_has_no_next_time() -> None:
    assert cron.parse("0 0 31 2 *").next_after(T0) is None


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("", "empty spec string"),
        ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
        ("* * * * * *", "expected exactly 5 fields, found 6: [* * * * * *]"),
        ("@fortnightly", "unrecognized descriptor: @fortnightly"),
        ("@every x", 'failed to parse duration @every x: time: invalid duration "x"'),
    ],
)
def test_parse_errors(schedule: str, message: str) -> None:
    with pytest.raises(cron.ScheduleError) as ei:
        cron.parse(schedule)
    assert str(ei.value) == message


def test_parse_rejects_out_of_range_fields() -> None:
    for bad in ("61 * * * *", "* 25 * * *", "* * 32 * *", "* * * 13 *", "x * * * *"):
        with pytest.raises(cron.ScheduleError):
            cron.parse(bad)


def test_missed_times_counts_and_picks_the_latest() -> None:
    s = cron.parse("*/1 * * * *")
    start = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    last, n = cron.missed_times(s, start, start + timedelta(minutes=5, seconds=10))
    assert (last, n) == (start + timedelta(minutes=5), 5)
    assert cron.missed_times(s, start, start + timedelta(seconds=59)) == (None, 0)
    last, n = cron.missed_times(s, start, start + timedelta(days=1))
    assert n > 100 and last == start + timedelta(days=1)


def test_job_name_is_minutes_since_epoch() -> None:
    t = datetime(2026, 3, 10, 12, 1, tzinfo=UTC)
    assert cron.job_name("hello", t) == f"hello-{int(t.timestamp()) // 60}"


# --- defaults and validation -------------------------------------------------------------------


def cronjob(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "schedule": "*/1 * * * *",
        "jobTemplate": {
            "spec": {
                "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}], "restartPolicy": "OnFailure"}}
            }
        },
    }
    base.update(spec)
    return {
        "apiVersion": "batch/v1",
        "kind": "CronJob",
        "metadata": {"name": "cj", "namespace": "default"},
        "spec": base,
    }


def messages(res: registry.Resource, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[str]:
    defaults.apply_defaults(res, obj)
    return [f"{c.field}: {c.message}" for c in validation.validate(res, obj, old)]


def test_cronjob_defaults() -> None:
    cj = cronjob()
    defaults.apply_defaults(registry.CRONJOBS, cj)
    spec = cj["spec"]
    assert (spec["concurrencyPolicy"], spec["suspend"]) == ("Allow", False)
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 1)
    pod_spec = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod_spec["dnsPolicy"] == "ClusterFirst" and pod_spec["terminationGracePeriodSeconds"] == 30
    assert "timeZone" not in spec


def test_cronjob_valid() -> None:
    assert messages(registry.CRONJOBS, cronjob()) == []
    assert messages(registry.CRONJOBS, cronjob(schedule="@hourly", timeZone="Europe/Paris")) == []


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ({"schedule": ""}, "spec.schedule: Required value"),
        ({"schedule": "* * *"}, 'spec.schedule: Invalid value: "* * *": expected exactly 5 fields, found 3: [* * *]'),
        (
            {"schedule": "TZ=UTC 0 * * * *"},
            'spec.schedule: Invalid value: "TZ=UTC 0 * * * *": '
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        ),
        ({"timeZone": "Mars/Olympus"}, 'spec.timeZone: Invalid value: "Mars/Olympus": unknown time zone Mars/Olympus'),
        (
            {"timeZone": "Local"},
            'spec.timeZone: Invalid value: "Local": timeZone must be an explicit time zone as defined in '
            "https://www.iana.org/time-zones",
        ),
        (
            {"concurrencyPolicy": "Sometimes"},
            'spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace"',
        ),
        (
            {"successfulJobsHistoryLimit": -1},
            "spec.successfulJobsHistoryLimit: Invalid value: -1: must be greater than or equal to 0",
        ),
    ],
)
def test_cronjob_invalid(spec: dict[str, Any], want: str) -> None:
    assert want in messages(registry.CRONJOBS, cronjob(**spec))


def test_cronjob_job_template_checked_as_a_job() -> None:
    cj = cronjob()
    cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    assert messages(registry.CRONJOBS, cj) == [
        'spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: "Always": '
        'supported values: "OnFailure", "Never"'
    ]


def test_cronjob_name_limit_on_create_only() -> None:
    cj = cronjob()
    cj["metadata"]["name"] = "x" * 53
    assert messages(registry.CRONJOBS, cj) == [
        f'metadata.name: Invalid value: "{"x" * 53}": must be no more than 52 characters'
    ]


def test_cronjob_update_may_keep_a_tz_prefix_it_had() -> None:
    old = cronjob(schedule="TZ=UTC 0 * * * *")
    new = cronjob(schedule="TZ=UTC 5 * * * *")
    assert messages(registry.CRONJOBS, new, old) == []


def rc(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
        }
    }
    base.update(spec)
    return {"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "web", "namespace": "default"},
            "spec": base}  # fmt: skip


def test_rc_defaults_selector_and_labels_from_template() -> None:
    obj = rc()
    defaults.apply_defaults(registry.REPLICATIONCONTROLLERS, obj)
    assert obj["spec"]["selector"] == {"app": "web"} and obj["metadata"]["labels"] == {"app": "web"}
    assert obj["spec"]["replicas"] == 1 and obj["status"] == {"replicas": 0}
    assert validation.validate(registry.REPLICATIONCONTROLLERS, obj) == []


def test_rc_selector_must_match_template() -> None:
    assert messages(registry.REPLICATIONCONTROLLERS, rc(selector={"app": "db"})) == [
        'spec.template.metadata.labels: Invalid value: map[string]string{"app":"web"}: '
        "`selector` does not match template `labels`"
    ]


@pytest.mark.parametrize(
    ("res", "want"),
    [
        (
            registry.DAEMONSETS,
            {"currentNumberScheduled": 0, "numberMisscheduled": 0, "desiredNumberScheduled": 0, "numberReady": 0},
        ),
        (registry.STATEFULSETS, {"replicas": 0, "availableReplicas": 0}),
        (registry.REPLICASETS, {"replicas": 0}),
    ],
)
def test_required_status_integers_from_creation(res: registry.Resource, want: dict[str, int]) -> None:
    obj: dict[str, Any] = {"metadata": {"name": "x"}, "spec": {}, "status": {}}
    defaults.apply_defaults(res, obj)
    assert obj["status"] == want


# --- tables ------------------------------------------------------------------------------------


def test_cronjob_table() -> None:
    cj = cronjob(timeZone="Europe/Paris")
    defaults.apply_defaults(registry.CRONJOBS, cj)
    cj["metadata"]["creationTimestamp"] = "2026-03-10T11:00:30Z"
    table = to_table(registry.CRONJOBS, [cj], list_rv="1", now=T0)
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names == ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age",
                     "Containers", "Images", "Selector"]  # fmt: skip
    assert table["rows"][0]["cells"][:7] == ["cj", "*/1 * * * *", "Europe/Paris", "False", 0, "<none>", "60m"]
    cj["status"] = {"active": [{"name": "cj-1"}], "lastScheduleTime": "2026-03-10T12:00:00Z"}
    del cj["spec"]["timeZone"]
    cells = to_table(registry.CRONJOBS, [cj], list_rv="1", now=T0)["rows"][0]["cells"]
    assert cells[2:6] == ["<none>", "False", 1, "30s"]


def test_rc_table() -> None:
    obj = rc(replicas=3)
    defaults.apply_defaults(registry.REPLICATIONCONTROLLERS, obj)
    obj["metadata"]["creationTimestamp"] = "2026-03-10T12:00:00Z"
    obj["status"] = {"replicas": 2, "readyReplicas": 1}
    table = to_table(registry.REPLICATIONCONTROLLERS, [obj], list_rv="1", now=T0)
    assert [c["name"] for c in table["columnDefinitions"]][:5] == ["Name", "Desired", "Current", "Ready", "Age"]
    assert table["rows"][0]["cells"] == ["web", 3, 2, 1, "30s", "c", "nginx", "app=web"]
