"""FailureLog: one line per distinct error, at most once a minute with a count, back-off; describe()."""

from __future__ import annotations

import logging

import pytest

from controlplane.client.failures import FailureLog, ProgramNotFound, describe


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(caplog: pytest.LogCaptureFixture) -> tuple[FailureLog, Clock]:
    caplog.set_level(logging.INFO, logger="test.failures")
    clock = Clock()
    return FailureLog(logging.getLogger("test.failures"), "sync", clock=clock, wall=clock, cap=30.0), clock


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.failures"]


def test_one_line_per_distinct_error_then_once_a_minute_with_count(caplog: pytest.LogCaptureFixture) -> None:
    fl, clock = make(caplog)
    for _ in range(10):
        fl.failure(ProgramNotFound("nft"))
        clock.now += 5  # 10 failures in 50 s: only the first is logged
    assert len(lines(caplog)) == 1
    assert 'exec: "nft": executable file not found in $PATH (install the nftables package)' in lines(caplog)[0]
    clock.now += 10  # 60 s after the first line
    fl.failure(ProgramNotFound("nft"))
    assert len(lines(caplog)) == 2
    assert "repeated 10 times in the last 60s" in lines(caplog)[1]
    # A different error is logged at once.
    fl.failure("iptables-nft-restore failed: line 3")
    assert len(lines(caplog)) == 3 and "line 3" in lines(caplog)[2]
    assert fl.last_error == "iptables-nft-restore failed: line 3"
    assert all(r.exc_info is None for r in caplog.records)  # never a traceback


def test_backoff_doubles_to_cap_and_success_resets(caplog: pytest.LogCaptureFixture) -> None:
    fl, _ = make(caplog)
    delays = [fl.failure("boom") for _ in range(7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert fl.consecutive == 7
    fl.success()
    assert fl.consecutive == 0 and fl.last_error is None and fl.delay() == 0.0
    assert "sync recovered after 7 failed attempts" in lines(caplog)[-1]
    assert fl.failure("boom") == 1.0
    assert len([m for m in lines(caplog) if "boom" in m]) == 2  # logged again after recovering


def test_success_without_failures_is_silent(caplog: pytest.LogCaptureFixture) -> None:
    fl, _ = make(caplog)
    fl.success()
    assert lines(caplog) == []


def test_describe() -> None:
    assert describe(ProgramNotFound("conntrack")).endswith("(install the conntrack package)")
    # What subprocess raises for a missing program.
    exc = FileNotFoundError(2, "No such file or directory", "runc")
    assert describe(exc) == 'exec: "runc": executable file not found in $PATH (install the runc package)'
    assert "ENOENT" in describe(FileNotFoundError(2, "No such file or directory", "/proc/x"))
    assert describe(ProgramNotFound("mystery")).endswith("(install the package that provides mystery)")
    assert describe(RuntimeError("route sync incomplete")) == "route sync incomplete"


def test_fix_hints_agree_with_the_programs_manifest() -> None:
    """The hints name the package lab/programs.txt (the one manifest, issue 18 §1) installs."""
    from pathlib import Path

    from controlplane.client.failures import PROGRAM_PACKAGES

    manifest = Path(__file__).resolve().parents[3] / "lab" / "programs.txt"
    if not manifest.exists():
        pytest.skip("lab/programs.txt is not in this checkout")
    packages: dict[str, set[str]] = {}
    for line in manifest.read_text().splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) >= 2 and words[0] != "-":
            packages.setdefault(words[0], set()).add(words[1])
    for program, package in PROGRAM_PACKAGES.items():
        assert program in packages, f"{program} is not in lab/programs.txt"
        assert package in packages[program], f"{program}: hint says {package}, manifest says {packages[program]}"
