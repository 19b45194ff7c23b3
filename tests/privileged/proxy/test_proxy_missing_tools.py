"""The proxy daemon on a host without ``nft`` and ``iptables-restore`` (issue 18 §3): its healthz
answers 503 with the reason, its log holds exactly one error line and no traceback, and once the
programs are installed its rules appear without a restart.

The proxy runs as the real daemon (``python -m proxy``, iptables-restore backend on nf_tables) in a
namespace of its own, with ``PATH`` set to a directory holding only symlinks to the programs it
may use (``cat``, ``sh``, ``iptables``, ``iptables-nft``, ``iptables-nft-save``): ``nft`` and
``iptables-nft-restore`` are missing until the test links them in. Nothing leaves the namespace
(it has only ``lo``); the namespace, the directory and the process are removed at teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from tests.helpers.netns import NetnsFactory, sh
from tests.helpers.wait import wait_for
from tests.privileged.proxy.conftest import REPO, service, slice_

PRESENT = ("cat", "sh", "iptables", "iptables-nft", "iptables-nft-save")
MISSING = ("nft", "iptables-nft-restore")


def _link(bindir: Path, prog: str) -> None:
    target = shutil.which(prog)
    assert target, f"{prog} is not installed on this machine"
    (bindir / prog).symlink_to(target)


def _healthz(ns: str) -> tuple[int, dict[str, object]]:
    out = sh("curl", "-s", "-w", "\n%{http_code}", "http://127.0.0.1:10256/healthz", netns=ns)
    body, _, code = out.rpartition("\n")
    return int(code), json.loads(body or "{}")


def test_missing_nft_and_restore_503_one_line_then_heals(netns: NetnsFactory, tmp_path: Path) -> None:
    ns = netns("nonft")
    sh("ip", "link", "set", "lo", "up", netns=ns)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for prog in PRESENT:
        _link(bindir, prog)
    objects = tmp_path / "objects.json"
    objects.write_text(
        json.dumps(
            {"kind": "List", "items": [service("web", "10.96.0.30"), slice_("web", [("10.244.1.2", "node1", True)])]}
        )
    )
    log_path = tmp_path / "proxy.log"
    argv = [
        shutil.which("ip") or "/usr/sbin/ip",
        "netns",
        "exec",
        ns,
        sys.executable,
        "-m",
        "proxy",
        "--node-name",
        "node1",
        "--objects-file",
        str(objects),
        "--backend",
        "iptables-restore",
        "--min-sync-period",
        "0",
        "--sync-period",
        "2s",  # health timeout 4 s; retries back off up to 2 s
        "--metrics-bind",
        "127.0.0.1:10249",
    ]
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, "PATH": str(bindir)}
        )
    try:
        wait_for(lambda: _healthz(ns)[0] == 503, 20, message="healthz 503 while nft is missing")
        code, body = _healthz(ns)
        assert code == 503
        assert 'exec: "nft": executable file not found in $PATH (install the nftables package)' in str(
            body["lastError"]
        ), body
        log = log_path.read_text(errors="replace")
        errors = [line for line in log.splitlines() if " ERROR " in line or "Traceback" in line]
        assert len(errors) == 1, log
        assert "sync failed" in errors[0] and "install the nftables package" in errors[0]
        assert "Traceback" not in log
        assert "KUBE-SERVICES" not in sh("iptables-nft-save", "-t", "nat", netns=ns)

        # The programs arrive (the package gets installed): rules appear without a restart.
        for prog in MISSING:
            _link(bindir, prog)
        wait_for(
            lambda: "KUBE-SVC-" in sh("iptables-nft-save", "-t", "nat", netns=ns), 15, message="rules once installed"
        )
        wait_for(lambda: _healthz(ns)[0] == 200, 10, message="healthy again")
        assert _healthz(ns)[1]["lastError"] == ""
        assert proc.poll() is None  # the same process all along
        assert "sync recovered after" in log_path.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
