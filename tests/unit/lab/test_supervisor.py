"""The lab supervisor restarts what dies, stops a node's components on request, and stops all by pid.

Components here are plain ``sleep`` processes outside any namespace (``netns=False``), so no root
is needed; every one is stopped by the supervisor's shutdown, and the test checks their pids died.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import supervisor
from tests.helpers.wait import wait_for


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still "exists"; count it as dead
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def sup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[supervisor.Supervisor]:
    monkeypatch.setattr(supervisor, "BACKOFF_START", 0.05)
    comps = [
        supervisor.Component(name=name, node=node, argv=["sleep", "300"], log_path=str(tmp_path / f"{node}-{name}.log"),
                             netns=False)
        for node, name in [("n1", "a"), ("n1", "b"), ("n2", "a")]
    ]  # fmt: skip
    s = supervisor.Supervisor(comps, tmp_path / "sup.sock")
    t = threading.Thread(target=s.run, daemon=True)
    t.start()
    wait_for(lambda: all(c.pid for c in comps), message="all components started")
    yield s
    pids = [c.pid for c in comps if c.pid]
    s.stopping.set()
    t.join(20)
    for pid in pids:
        assert not pid_alive(pid)


def status(s: supervisor.Supervisor) -> dict[str, dict[str, object]]:
    answer = supervisor.request(s.socket_path, {"cmd": "status"})
    return {f"{c['node']}/{c['name']}": c for c in answer["components"]}


def test_a_killed_component_is_restarted_with_a_new_pid(sup: supervisor.Supervisor) -> None:
    old = status(sup)["n1/a"]["pid"]
    assert isinstance(old, int)
    os.kill(old, signal.SIGKILL)
    new = wait_for(lambda: (p := status(sup)["n1/a"]["pid"]) not in (None, old) and p, message="a restart")
    assert status(sup)["n1/a"]["restarts"] == 1
    assert pid_alive(int(new))
    assert "starting n1/a" in Path(str(status(sup)["n1/a"]["log"])).read_text()


def test_stop_node_stops_only_that_nodes_components_and_start_brings_them_back(sup: supervisor.Supervisor) -> None:
    before = status(sup)
    assert supervisor.request(sup.socket_path, {"cmd": "stop-node", "node": "n1"})["ok"]
    after = status(sup)
    assert after["n1/a"]["pid"] is None and after["n1/b"]["pid"] is None
    assert not pid_alive(int(str(before["n1/a"]["pid"])))
    assert after["n2/a"]["pid"] == before["n2/a"]["pid"]
    assert supervisor.request(sup.socket_path, {"cmd": "start-node", "node": "n1"})["ok"]
    wait_for(lambda: status(sup)["n1/a"]["pid"] and status(sup)["n1/b"]["pid"], message="n1 restarted")


def test_bad_requests_get_clear_errors(sup: supervisor.Supervisor) -> None:
    answer = supervisor.request(sup.socket_path, {"cmd": "stop-node", "node": "nope"})
    assert answer == {"ok": False, "error": "no components on node 'nope'"}
    assert "unknown command" in supervisor.request(sup.socket_path, {"cmd": "reboot"})["error"]


def test_stop_node_with_kill_is_a_power_failure_not_a_shutdown(tmp_path: Path) -> None:
    """``kill``: SIGKILL at once — a process that would hand over on SIGTERM (etcd's leader) gets no chance."""
    log = tmp_path / "term.log"
    comp = supervisor.Component(
        name="etcd", node="cp", log_path=str(log), netns=False,
        argv=["sh", "-c", f"trap 'echo got TERM >> {tmp_path}/said; exit 0' TERM; while :; do sleep 0.05; done"],
    )  # fmt: skip
    s = supervisor.Supervisor([comp], tmp_path / "sup.sock")
    t = threading.Thread(target=s.run, daemon=True)
    t.start()
    try:
        wait_for(lambda: comp.pid, message="started")
        pid = comp.pid
        assert supervisor.request(s.socket_path, {"cmd": "stop-node", "node": "cp", "kill": True})["ok"]
        assert pid is not None and not pid_alive(pid)
        assert not (tmp_path / "said").exists()  # never saw SIGTERM
        assert status(s)["cp/etcd"]["last_exit"] == -signal.SIGKILL
        # the next stop is a plain one again
        assert supervisor.request(s.socket_path, {"cmd": "start-node", "node": "cp"})["ok"]
        wait_for(lambda: comp.pid, message="started again")
        assert supervisor.request(s.socket_path, {"cmd": "stop-node", "node": "cp"})["ok"]
        assert (tmp_path / "said").read_text() == "got TERM\n"
    finally:
        s.stopping.set()
        t.join(20)
