"""Bad input to the lab commands: a clear message, the right exit code, and nothing made.

Runs with no lab up (test_lab.py's module lab is down by now; test_lab_variants.py comes after).
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.test_lab import kubelab, machine_snapshot


def _readable_by_others(path: Path) -> bool:
    """Whether an unprivileged user can reach ``path`` (every directory above it searchable by others)."""
    return all(p.stat().st_mode & stat.S_IXOTH for p in [path, *path.parents])


def test_not_root_is_refused_with_a_clear_message() -> None:
    # The unprivileged user must be able to import the project: a checkout in root's home (mode 700,
    # where a root user on a fresh machine naturally clones — the clean room does) is out of its reach.
    checkout = Path(__file__).resolve().parents[2]
    if not _readable_by_others(checkout):
        pytest.skip(f"{checkout} is not readable by an unprivileged user (a parent directory is not o+x)")
    before = machine_snapshot()
    res = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-m", "lab", "up"],
        capture_output=True, text=True, check=False, cwd="/",
    )  # fmt: skip
    assert res.returncode == 1
    assert "needs root" in res.stdout and "sudo" in res.stdout
    assert machine_snapshot() == before


def test_a_missing_dependency_is_named_with_the_fix() -> None:
    before = machine_snapshot()
    res = kubelab("up", env={**os.environ, "PATH": "/nonexistent"})
    assert res.returncode == 1
    assert "missing:" in res.stdout and "docker-registry (Debian package docker-registry)" in res.stdout
    assert "make deps" in res.stdout
    assert machine_snapshot() == before
    assert not Path("/var/lib/kubelab").exists()


def test_down_with_nothing_up_says_so_and_succeeds() -> None:
    before = machine_snapshot()
    res = kubelab("down")
    assert res.returncode == 0 and "No lab is up" in res.stdout
    assert machine_snapshot() == before


def test_status_and_node_with_nothing_up_say_so() -> None:
    assert "No lab is up" in kubelab("status").stdout
    res = kubelab("node", "stop", "kl-node1")
    assert res.returncode == 1 and "No lab is up" in res.stdout


def test_bad_worker_count_is_refused_before_anything_is_made() -> None:
    before = machine_snapshot()
    res = kubelab("up", "--workers", "0")
    assert res.returncode == 1 and "between 1 and 50" in res.stdout
    assert machine_snapshot() == before
