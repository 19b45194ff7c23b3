"""The safety routes of DESIGN.md §3 are held while anyone needs them, and only then."""

from __future__ import annotations

import subprocess

from lab import safety


def unreachable_routes() -> str:
    return subprocess.run(
        ["ip", "route", "show", "type", "unreachable"], capture_output=True, text=True, check=True
    ).stdout


def test_hold_installs_routes_and_nested_holders_keep_them() -> None:
    with safety.hold("outer"):
        assert safety.routes_present()
        with safety.hold("inner"):
            assert safety.routes_present()
        # the inner holder leaving must not strip the outer one's protection
        assert safety.routes_present()
        routes = unreachable_routes()
        assert "10.244.0.0/16" in routes and "10.96.0.0/12" in routes and "192.168.56.0/24" in routes


def test_a_packet_to_the_pod_range_is_refused_locally() -> None:
    with safety.hold("probe"):
        res = subprocess.run(["ip", "route", "get", "10.244.9.9"], capture_output=True, text=True)
        assert res.returncode != 0 or "unreachable" in res.stdout


def test_a_lab_address_is_refused_locally_when_no_lab_holds_it() -> None:
    with safety.hold("probe"):
        connected = subprocess.run(
            ["ip", "route", "show", "192.168.56.0/24", "proto", "kernel"], capture_output=True, text=True
        ).stdout.strip()
        res = subprocess.run(["ip", "route", "get", "192.168.56.77"], capture_output=True, text=True)
        if connected:  # a lab (or the Vagrant lab) is up on this machine: its bridge owns the range
            assert "via" not in res.stdout
        else:
            assert res.returncode != 0 or "unreachable" in res.stdout
