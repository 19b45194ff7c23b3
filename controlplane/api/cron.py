"""CronJob schedules: parsing the cron syntax Kubernetes accepts and computing schedule times.

Role: the one place that knows what ``spec.schedule`` and ``spec.timeZone`` of a batch/v1 CronJob
mean. ``validation`` uses ``schedule_errors``/``time_zone_error`` (kube-apiserver's
``validateScheduleFormat``/``validateTimeZone`` in pkg/apis/batch/validation/validation.go);
the CronJob controller uses ``Schedule.next_after``/``missed_times`` (cronjob_controllerv2's
``mostRecentScheduleTime``/``nextScheduleTime`` in pkg/controller/cronjob/utils.go).

Syntax, as robfig/cron's ``ParseStandard`` (the parser Kubernetes uses): exactly five fields
(minute hour day-of-month month day-of-week, with ranges, steps, lists, names and ``?``), or a
descriptor: ``@yearly``/``@annually``/``@monthly``/``@weekly``/``@daily``/``@midnight``/
``@hourly``, or ``@every <duration>`` (a constant delay). ``TZ=``/``CRON_TZ=`` prefixes are refused
at create (``spec.timeZone`` is the way to name a zone). Field matching is croniter's; times are
computed in the schedule's zone (IANA name via zoneinfo; UTC when unset, as kube-controller-manager
running in UTC does).

Pure and thread-safe: a ``Schedule`` is immutable; every function takes the time it needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class ScheduleError(ValueError):
    """An unparseable schedule; the message is robfig/cron's wording."""


def _go_duration(text: str) -> float:
    """Go's ``time.ParseDuration`` for the positive durations ``@every`` takes (``1h30m``, ``90s``)."""
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise ScheduleError(f'failed to parse duration @every {text}: time: invalid duration "{text}"')
    return total


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: a 5-field expression, or a constant delay (``@every``)."""

    expression: str = ""  # five fields, descriptors expanded
    every: float = 0.0  # seconds between runs for ``@every``; 0 otherwise

    def next_after(self, t: datetime, zone: tzinfo = UTC) -> datetime | None:
        """The first schedule time strictly after ``t`` (aware), or None when it never fires again."""
        if self.every:
            # robfig's ConstantDelaySchedule: t + delay, rounded down to the second
            nxt = t + timedelta(seconds=self.every)
            return nxt.replace(microsecond=0)
        try:
            found: datetime = croniter(self.expression, t.astimezone(zone)).get_next(datetime)
            return found.astimezone(UTC)
        except (ValueError, KeyError, OverflowError):  # CroniterBadDateError: no such date (e.g. Feb 31)
            return None


def parse(schedule: str) -> Schedule:
    """``schedule`` parsed as ``cron.ParseStandard`` does, or ScheduleError in its words."""
    text = schedule.strip()
    if not text:
        raise ScheduleError("empty spec string")
    if text.startswith("@"):
        if text.startswith("@every "):
            seconds = _go_duration(text[len("@every ") :].strip())
            return Schedule(every=max(1.0, float(int(seconds))))  # robfig: at least one second
        if text not in DESCRIPTORS:
            raise ScheduleError(f"unrecognized descriptor: {text}")
        return Schedule(expression=DESCRIPTORS[text])
    fields = text.split()
    if len(fields) != 5:
        raise ScheduleError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    expression = " ".join(fields)
    try:
        croniter(expression)
    except (ValueError, KeyError) as e:
        raise ScheduleError(f"failed to parse {expression!r}: {e}") from None
    return Schedule(expression=expression)


def zone_of(time_zone: str | None) -> tzinfo:
    """The zone a CronJob's schedule runs in (UTC when ``spec.timeZone`` is unset)."""
    if not time_zone:
        return UTC
    return ZoneInfo(time_zone)


def schedule_errors(schedule: str, allow_tz: bool = False) -> list[str]:
    """Why ``schedule`` is invalid (empty if valid), in validateScheduleFormat's words.

    ``allow_tz``: an update of an object that already had ``TZ=`` in its schedule may keep it.
    """
    out: list[str] = []
    body = schedule
    if schedule.startswith(("TZ=", "CRON_TZ=")):
        # robfig's parser takes a zone prefix itself; whether one is allowed is the check below
        zone_name, _, body = schedule.partition(" ")
        try:
            ZoneInfo(zone_name.split("=", 1)[1])
        except (ZoneInfoNotFoundError, ValueError):
            out.append(f"provided bad location {zone_name.split('=', 1)[1]}: unknown time zone")
    try:
        parse(body)
    except ScheduleError as e:
        out.append(str(e))
    if not allow_tz and "TZ" in schedule:
        out.append("cannot use TZ or CRON_TZ in schedule, use timeZone field instead")
    return out


_TZ_CHARS = re.compile(r"^[A-Za-z.\-_0-9+]{1,14}$")


def time_zone_error(time_zone: str) -> str | None:
    """Why ``time_zone`` is not a valid ``spec.timeZone`` (validateTimeZone), or None."""
    if not time_zone:
        return "timeZone must be nonempty"
    if time_zone.lower() == "local":
        return "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
    for part in time_zone.split("/"):
        if part in (".", "..") or not _TZ_CHARS.match(part):
            return f"unknown time zone {time_zone}"
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {time_zone}"
    return None


def missed_times(sched: Schedule, earliest: datetime, now: datetime, zone: tzinfo = UTC) -> tuple[datetime | None, int]:
    """The most recent schedule time in (``earliest``, ``now``] and how many there were.

    cronjob_controllerv2's ``mostRecentScheduleTime``: the count lets the controller warn about
    too many missed starts (it stops counting past 100, as Kubernetes does) without listing them.
    """
    last: datetime | None = None
    count = 0
    t = sched.next_after(earliest, zone)
    while t is not None and t <= now:
        last, count = t, count + 1
        if count > 100:
            # jump straight to the last time before now instead of stepping through years
            if sched.every:
                steps = int((now - t).total_seconds() // sched.every)
                last = t + timedelta(seconds=steps * sched.every)
            else:
                probe: datetime = croniter(sched.expression, now.astimezone(zone)).get_prev(datetime)
                last = probe.astimezone(UTC)
                on_now = sched.next_after(last, zone)  # get_prev is strictly before ``now``
                if on_now is not None and on_now <= now:
                    last = on_now
            break
        t = sched.next_after(t, zone)
    return last, count


def job_name(cronjob_name: str, scheduled: datetime) -> str:
    """``<cronjob>-<minutes since the epoch>``: cronjob_controllerv2's ``getJobName``."""
    return f"{cronjob_name}-{int(scheduled.timestamp()) // 60}"
