"""Network safety: the root namespace's ``unreachable`` routes for the pod and service ranges.

DESIGN.md §3: before any address is assigned, the root namespace must route the pod network
(10.244.0.0/16) and the service network (10.96.0.0/12) nowhere, so a packet for them that is not
caught by a more specific route into one of our namespaces is dropped here and never follows the
default route off the machine. The node network (192.168.56.0/24) is held the same way: while a
lab is up its bridge's connected route (metric 0) wins; while a test holds the routes without a
lab, a stray request to a lab address is refused here instead of leaving by the default route.

Several holders (a lab, and any number of test processes) may need the routes at the same time.
Each ``hold()`` registers its pid in ``/run/kubelab/safety/``; the routes are added by the first
holder and removed by the last one, under an flock, so one holder leaving never strips the
protection from another. Holders whose pid is gone are forgotten (a crashed test does not pin the
routes forever, and does not make them vanish under a live one either).

Only ``ip route`` is used (iproute2), so this module stays importable without pyroute2.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

POD_NETWORK = "10.244.0.0/16"
SERVICE_NETWORK = "10.96.0.0/12"
NODE_NETWORK = "192.168.56.0/24"
SAFETY_PREFIXES = (POD_NETWORK, SERVICE_NETWORK, NODE_NETWORK)
STATE_DIR = Path("/run/kubelab/safety")
# A recognisable metric marks the routes as ours; a more specific route (a /24 into a node
# namespace) always wins over these /16 and /12 routes whatever their metric, and a connected
# route for the node network (metric 0: the lab's bridge, a Vagrant host-only network) beats ours.
METRIC = "4242"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False)


def routes_present() -> bool:
    out = _ip("route", "show", "type", "unreachable").stdout
    return all(prefix in out for prefix in SAFETY_PREFIXES)


def _install() -> None:
    for prefix in SAFETY_PREFIXES:
        res = _ip("route", "replace", "unreachable", prefix, "metric", METRIC)
        if res.returncode != 0:
            raise OSError(f"cannot install safety route 'unreachable {prefix}': {res.stderr.strip()}")


def _remove() -> None:
    for prefix in SAFETY_PREFIXES:
        _ip("route", "del", "unreachable", prefix, "metric", METRIC)


def _live_holders() -> list[Path]:
    live = []
    for f in STATE_DIR.glob("holder.*"):
        try:
            pid = int(f.name.split(".", 2)[1])
        except (IndexError, ValueError):
            f.unlink(missing_ok=True)
            continue
        if Path(f"/proc/{pid}").exists():
            live.append(f)
        else:
            f.unlink(missing_ok=True)
    return live


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    with open(STATE_DIR / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def acquire(tag: str) -> Path:
    """Register a holder (``tag`` distinguishes several holders in one process) and install."""
    with _locked():
        marker = STATE_DIR / f"holder.{os.getpid()}.{tag}"
        marker.write_text(tag)
        _install()
        return marker


def release(marker: Path) -> None:
    with _locked():
        marker.unlink(missing_ok=True)
        if not _live_holders():
            _remove()
        # The lock file stays (an empty file on tmpfs): removing it would race with a holder
        # that already opened it and waits for the lock.


@contextlib.contextmanager
def hold(tag: str = "default") -> Iterator[None]:
    marker = acquire(tag)
    try:
        yield
    finally:
        release(marker)
