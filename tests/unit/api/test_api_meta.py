from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.api import errors, meta


def test_now_is_rfc3339_utc_seconds() -> None:
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", meta.now_rfc3339())


def test_now_is_the_current_second_as_format_time_writes_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # A clock that moves: the per-second cache must follow it, not keep the first answer.
    for t in (1_795_474_628.999, 1_795_474_629.0, 1_795_474_629.5, 1_795_474_700.25):
        monkeypatch.setattr(meta.time, "time", lambda t=t: t)
        assert meta.now_rfc3339() == meta.format_time(datetime.fromtimestamp(t, UTC))


def test_format_time_converts_to_utc() -> None:
    t = datetime(2026, 11, 23, 20, 27, 11, 999_000, tzinfo=timezone(timedelta(hours=2)))
    assert meta.format_time(t) == "2026-11-23T18:27:11Z"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-23T18:27:11Z", datetime(2026, 11, 23, 18, 27, 11, tzinfo=UTC)),
        ("2026-11-23T18:27:11.123456Z", datetime(2026, 11, 23, 18, 27, 11, 123456, tzinfo=UTC)),
        ("2026-11-23T20:27:11+02:00", datetime(2026, 11, 23, 18, 27, 11, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert meta.parse_time(text) == expected


def test_parse_time_rejects_garbage() -> None:
    with pytest.raises(errors.BadRequest, match="yesterday"):
        meta.parse_time("yesterday")


def test_uids_are_unique_uuids() -> None:
    uids = {meta.new_uid() for _ in range(100)}
    assert len(uids) == 100
    assert all(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", u) for u in uids)
    parsed = [uuid.UUID(u) for u in uids]
    assert all(p.version == 4 and p.variant == uuid.RFC_4122 and str(p) == u for p, u in zip(parsed, uids, strict=True))


@pytest.mark.parametrize(
    ("obj", "key"),
    [
        ({"metadata": {"name": "web", "namespace": "default"}}, "default/web"),
        ({"metadata": {"name": "node-1"}}, "node-1"),
        ({"metadata": {"name": "n", "namespace": ""}}, "n"),
    ],
)
def test_object_key(obj: dict[str, object], key: str) -> None:
    assert meta.object_key(obj) == key


def test_split_key_rejects_extra_slashes() -> None:
    with pytest.raises(ValueError):
        meta.split_key("a/b/c")


_name = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)


@given(ns=st.one_of(st.none(), _name), name=_name)
def test_key_round_trip(ns: str | None, name: str) -> None:
    obj = {"metadata": {"name": name, **({"namespace": ns} if ns else {})}}
    assert meta.split_key(meta.object_key(obj)) == (ns, name)
