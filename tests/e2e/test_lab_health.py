"""`kubelab up` on a machine where the proxy's `nft` is missing (issue 18): it does not claim the lab
is up. Its preflight reads the programs manifest (lab/programs.txt), so it refuses before making
anything, naming the program, its Debian package and `make deps`. (What a proxy does when `nft`
goes missing under it — 503 on :10256 with the reason, one error line, healed without a restart —
is tests/privileged/proxy/test_proxy_missing_tools.py; `kubelab up` waiting for every component's
health and naming an unhealthy one's error and log is tests/unit/lab/test_health.py and the status
check in tests/e2e/test_lab.py.)

The machine's programs stay installed: the lab runs with ``PATH`` set to a directory of symlinks
to every program on the usual PATH except ``nft`` (removed at the end). Runs with no lab up.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_lab import kubelab, machine_snapshot, sh

DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


@pytest.fixture
def path_without_nft(tmp_path: Path) -> Iterator[str]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for d in DIRS:
        if not Path(d).is_dir():
            continue
        for entry in Path(d).iterdir():
            link = bindir / entry.name
            if entry.name != "nft" and not link.exists() and not link.is_symlink():
                link.symlink_to(entry)
    assert not (bindir / "nft").exists()
    yield str(bindir)


def test_up_without_nft_is_refused_naming_the_package(path_without_nft: str) -> None:
    before = lab_owned(machine_snapshot())
    res = kubelab("up", "--workers", "1", env={**os.environ, "PATH": path_without_nft}, timeout=400)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "The lab is up" not in res.stdout
    assert "missing: nft (Debian package nftables)" in res.stdout, res.stdout
    assert "make deps" in res.stdout
    assert "Traceback" not in res.stdout + res.stderr
    assert lab_owned(machine_snapshot()) == before
    assert not Path("/var/lib/kubelab").exists()
    assert "kl0" not in sh("ip", "-br", "link").split()


def lab_owned(snapshot: dict[str, str]) -> dict[str, str]:
    """What the lab owns (the machine is shared: other tests' namespaces and routes come and go)."""
    netns = " ".join(sorted(w for w in snapshot["netns"].split() if w.startswith("kl-")))
    routes = "\n".join(line for line in snapshot["routes"].splitlines() if "kl0" in line or "klv-" in line)
    mounts = "\n".join(line for line in snapshot["mounts"].splitlines() if "kubelab" in line or "/netns/kl-" in line)
    keep = ("runc", "state", "processes")
    return {"netns": netns, "routes": routes, "mounts": mounts, **{k: snapshot[k] for k in keep}}
