"""``kubectl exec`` with kubectl 1.27 (raw SPDY only) end to end: API server (spdy_upgrade +
spdy_exec) → noded's WebSocket exec → runc. Output, stdin, exit codes, and ``-it`` on a real
terminal with a resize.

Reuses the ``cluster`` fixture of test_noded_api and the terminal helper of test_tty; kubectl
processes are ended by pid, also on failure.
"""

from __future__ import annotations

import subprocess

from tests.helpers.kubectl import kubectl_binary
from tests.helpers.wait import wait_for
from tests.privileged.noded.test_noded_api import Cluster, running_ready
from tests.privileged.noded.test_noded_api import cluster as cluster
from tests.privileged.noded.test_tty import stty_size_becomes, terminal


def test_old_kubectl_exec_over_spdy(cluster: Cluster) -> None:
    cluster.create("spdy", [{"name": "c", "image": cluster.image("busybox"), "command": ["sleep", "3600"]}])
    cluster.wait_pod("spdy", running_ready)
    base = [kubectl_binary("1.27"), "--kubeconfig", str(cluster.api.kubeconfig), "exec"]
    r = subprocess.run([*base, "spdy", "--", "sh", "-c", "echo out; echo err >&2"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert (r.stdout, r.stderr) == (b"out\n", b"err\n")
    r = subprocess.run([*base, "-i", "spdy", "--", "wc", "-c"], input=b"x" * 100_000, capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == b"100000", r.stderr
    r = subprocess.run([*base, "spdy", "--", "sh", "-c", "exit 3"], capture_output=True, timeout=60)
    assert r.returncode == 3, r.stderr
    with terminal([*base, "-it", "spdy", "--", "sh"], rows=30, cols=100) as t:
        t.wait_text("/ # ")
        t.type("stty size; echo $((6*7))\n")
        out = t.wait_text("\n42\r")
        assert "\n30 100\r" in out
        t.resize(50, 132)
        wait_for(lambda: stty_size_becomes(t, "50 132"), 20, message=f"resized; terminal:\n{t.text!r}")
        t.type("exit 4\n")
        assert t.wait_exit() == 4
