"""Helpers: Go durations, int-or-percent rounding, selectors, controller selection, CLI flags."""

from __future__ import annotations

import argparse
from typing import Any

import pytest

from controlplane.controllers import cli
from controlplane.controllers.manager import ControllerOptions, enabled
from controlplane.controllers.util import (
    SelectorError,
    int_or_percent,
    parse_duration,
    selector_matches,
    selector_string,
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("40s", 40.0), ("1m", 60.0), ("1m30s", 90.0), ("500ms", 0.5), ("1h", 3600.0), ("2.5s", 2.5), ("300", 300.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "s", "10x", "1m-3s", "forty"])
def test_parse_duration_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(bad)


@pytest.mark.parametrize(
    ("value", "total", "up", "want"),
    [
        (2, 10, True, 2),
        ("25%", 10, True, 3),
        ("25%", 10, False, 2),
        ("0%", 5, True, 0),
        ("100%", 3, False, 3),
        ("3", 10, True, 3),
        (None, 10, True, 0),
    ],
)
def test_int_or_percent(value: Any, total: int, up: bool, want: int) -> None:
    assert int_or_percent(value, total, up) == want


def test_int_or_percent_rejects() -> None:
    with pytest.raises(ValueError, match="invalid"):
        int_or_percent("x%", 10, True)


@pytest.mark.parametrize(
    ("selector", "labels", "want"),
    [
        ({"matchLabels": {"a": "1"}}, {"a": "1", "b": "2"}, True),
        ({"matchLabels": {"a": "1"}}, {"a": "2"}, False),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"b": "1"}, True),
        ({}, {"x": "y"}, True),
        (None, {"x": "y"}, False),
    ],
)
def test_selector_matches(selector: Any, labels: dict[str, str], want: bool) -> None:
    assert selector_matches(selector, labels) is want


def test_selector_errors_and_string() -> None:
    with pytest.raises(SelectorError, match="Bogus"):
        selector_matches({"matchExpressions": [{"key": "a", "operator": "Bogus"}]}, {})
    sel = {
        "matchLabels": {"b": "2", "a": "1"},
        "matchExpressions": [
            {"key": "t", "operator": "In", "values": ["y", "x"]},
            {"key": "g", "operator": "DoesNotExist"},
        ],
    }
    assert selector_string(sel) == "a=1,b=2,t in (x,y),!g"


def test_enabled_controllers() -> None:
    names = ["replicaset", "deployment", "podgc"]
    assert enabled(("*",), names) == names
    assert enabled(("*", "-podgc"), names) == ["replicaset", "deployment"]
    assert enabled(("deployment",), names) == ["deployment"]
    with pytest.raises(ValueError, match="unknown controller 'nope'"):
        enabled(("nope",), names)


def test_options_accept_go_durations_and_refuse_nonsense() -> None:
    opts = ControllerOptions(node_monitor_grace_period="1m", pod_eviction_timeout="30s")  # type: ignore[arg-type]
    assert (opts.node_monitor_grace_period, opts.pod_eviction_timeout) == (60.0, 30.0)
    with pytest.raises(ValueError, match="grace-period"):
        ControllerOptions(node_monitor_grace_period=0)


def parse(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    cli.add_flags(p)
    return p.parse_args(["--kubeconfig", "k", *argv])


def test_cli_flags() -> None:
    args = parse(
        "--node-monitor-grace-period",
        "5s",
        "--pod-eviction-timeout",
        "1m",
        "--no-leader-elect",
        "--controllers",
        "*,-podgc",
    )
    opts = cli.options_from_args(args)
    assert opts.node_monitor_grace_period == 5.0 and opts.pod_eviction_timeout == 60.0
    assert opts.leader_elect is False and opts.controllers == ("*", "-podgc")
    with pytest.raises(SystemExit):
        parse("--node-monitor-grace-period", "soon")
    with pytest.raises(ValueError, match="cluster-cidr"):
        cli.options_from_args(parse("--cluster-cidr", "10.244.0.1/16"))
    with pytest.raises(ValueError, match="unknown controller"):
        cli.options_from_args(parse("--controllers", "replicaset,bogus"))
