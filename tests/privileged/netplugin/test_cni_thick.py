"""Designs (b) and (c): the plugin's thin client (Python launcher, or the native one built from
thinclient.c) hands requests to a CNI server in the same namespace, and falls back to running the
plugin in-process when there is none.

The server runs inside the test's host namespace (so its socket is keyed by that namespace's
inode and no other test or node can reach it); it logs to a file given in *its* environment, so a
log line proves the server, not the in-process fallback, did the work.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from netplugin.install import install_plugins
from tests.helpers.netns import sh
from tests.helpers.wait import wait_for
from tests.privileged.netplugin.conftest import CniEnv

ROOT = str(Path(__file__).resolve().parents[3])


def server_socket(cni: CniEnv) -> str:
    ino = sh("stat", "-L", "-c", "%i", f"/var/run/netns/{cni.host}").strip()
    return f"/run/kubelab/cni/{ino}.sock"


@pytest.mark.parametrize("native", [True, False])
def test_requests_go_through_the_server_and_fall_back_without_it(cni: CniEnv, tmp_path: Path, native: bool) -> None:
    install_plugins(cni.bin, native=native)
    assert (cni.bin / "kubelab-bridge").read_bytes().startswith(b"\x7fELF") == native
    log = tmp_path / "server.log"
    sock = server_socket(cni)
    env = {**os.environ, "KUBELAB_CNI_LOG": str(log)}
    server = subprocess.Popen([*cni.wrapper, sys.executable, "-m", "netplugin.fast.cniserver"], env=env, cwd=ROOT)
    try:
        wait_for(lambda: os.path.exists(sock), timeout=20, message="CNI server socket")
        pods = [cni.pod(f"p{i}") for i in range(8)]
        with ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(lambda i: cni.run("ADD", cni.conf(), netns=pods[i], cid=f"t{i}"), range(8)))
        assert len({r["ips"][0]["address"] for r in results if r}) == 8
        cni.run("CHECK", {**cni.conf(), "prevResult": results[0]}, netns=pods[0], cid="t0")
        for i in range(8):
            cni.run("DEL", cni.conf(), netns=pods[i], cid=f"t{i}")
        text = log.read_text()
        assert text.count("ADD done") == 8 and text.count("DEL done") == 8
        assert cni.reserved() == [] and cni.links() == ["cni0", "lo"]
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert not os.path.exists(sock)
    res = cni.run("ADD", cni.conf(), netns=cni.pod("after"), cid="after")  # in-process fallback
    assert res is not None and "after" not in log.read_text()


def test_server_exits_when_its_agent_is_killed(cni: CniEnv) -> None:
    sock = server_socket(cni)
    # a stand-in agent (a shell) starts the server with its own pid, then is SIGKILLed
    agent = subprocess.Popen(
        [*cni.wrapper, "sh", "-c", f"cd {ROOT} && {sys.executable} -m netplugin.fast.cniserver --parent-pid $$ & wait"],
    )
    try:
        wait_for(lambda: os.path.exists(sock), timeout=20, message="CNI server socket")
        server_pid = int(sh("pgrep", "-P", str(agent.pid), "-f", "netplugin.fast.cniserver").split()[0])
    finally:
        agent.kill()
        agent.wait(timeout=10)
    wait_for(lambda: not os.path.exists(f"/proc/{server_pid}"), timeout=10, message="server exit after its agent died")
    assert not os.path.exists(sock)
