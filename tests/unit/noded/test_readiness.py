"""Node Ready as kubelet reports it (noded.readiness through the node status manager's conditions): the CNI network or
the runtime unusable → Ready=False with kubelet's reason and message; back to Ready=True when the
cause is gone. No root, no API server: a Noded over FakeRuntime, its real CniInvoker pointed at a
temporary conf dir and bin dir."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from noded.agent import Noded, NodedConfig
from noded.readiness import RuntimeState, aggregate, runtime_status
from noded.runtime.fake import FakeRuntime


class Runtime(FakeRuntime):
    """FakeRuntime with a status check that can be broken."""

    def __init__(self) -> None:
        super().__init__()
        self.broken: Exception | None = None

    def status(self) -> None:
        if self.broken is not None:
            raise self.broken


@pytest.fixture
def node(tmp_path: Path) -> Any:
    cfg = NodedConfig("n1", "192.168.56.11", tmp_path / "root", tmp_path / "net.d", [tmp_path / "bin"])
    (tmp_path / "bin").mkdir()
    (tmp_path / "root").mkdir()
    n = Noded(cfg, client=object(), runtime=Runtime())  # type: ignore[arg-type]
    yield n
    n.worker.close()


def ready(n: Any) -> dict[str, Any]:
    n.readiness.check(n.runtime, n.cni, force=True)
    return next(c for c in n.node_status.conditions() if c["type"] == "Ready")


def write_conflist(n: Any) -> None:
    n.cfg.cni_conf_dir.mkdir(parents=True, exist_ok=True)
    conf = {"cniVersion": "1.0.0", "name": "kubelab", "plugins": [{"type": "kubelab-bridge"}]}
    (n.cfg.cni_conf_dir / "10-kubelab.conflist").write_text(json.dumps(conf))


def install_plugin(n: Any) -> None:
    exe = n.cfg.cni_bin_dirs[0] / "kubelab-bridge"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)


NOT_INITIALIZED = (
    "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
    "message:Network plugin returns error: cni plugin not initialized"
)


def test_broken_cni_is_not_ready_with_kubelets_reason_then_recovers(node: Any) -> None:
    c = ready(node)
    assert (c["status"], c["reason"], c["message"]) == ("False", "KubeletNotReady", NOT_INITIALIZED)
    write_conflist(node)  # a config naming a plugin that is not installed
    c = ready(node)
    assert c["status"] == "False"
    assert c["message"].startswith(
        "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
        'message:Network plugin returns error: failed to find plugin "kubelab-bridge" in path ['
    )
    install_plugin(node)
    c = ready(node)
    assert (c["status"], c["reason"], c["message"]) == ("True", "KubeletReady", "kubelet is posting ready status")


def test_broken_runtime_is_not_ready_and_both_aggregate(node: Any) -> None:
    write_conflist(node)
    install_plugin(node)
    node.runtime.broken = FileNotFoundError(2, "No such file or directory", "runc")
    c = ready(node)
    runtime_err = (
        "container runtime not ready: RuntimeReady=false reason:RuntimeNotReady "
        'message:exec: "runc": executable file not found in $PATH (install the runc package)'
    )
    assert (c["status"], c["message"]) == ("False", runtime_err)
    (node.cfg.cni_conf_dir / "10-kubelab.conflist").unlink()
    assert ready(node)["message"] == f"[{runtime_err}, {NOT_INITIALIZED}]"
    node.runtime.broken = None
    write_conflist(node)
    assert ready(node)["status"] == "True"


def test_runc_runtime_status_runs_its_binary(tmp_path: Path) -> None:
    class Runc:
        runc_bin = str(tmp_path / "runc")  # not there

    assert runtime_status(Runc()) == f"fork/exec {Runc.runc_bin}: no such file or directory (install the runc package)"
    Runc.runc_bin = "true"
    assert runtime_status(Runc()) is None


def test_runtime_state_timing_and_pleg(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    st = RuntimeState(clock=lambda: now[0])
    st.set_network(None)
    assert st.runtime_errors() == ["container runtime status check may not have completed yet"]
    st.set_runtime(None)
    st.pleg_relisted()
    assert st.ready() == (True, "KubeletReady", "kubelet is posting ready status")
    now[0] = 30.0
    assert st.runtime_errors() == ["container runtime is down"]
    now[0] = 180.0
    st.set_runtime(None)
    assert st.runtime_errors() == ["PLEG is not healthy: pleg was last seen active 3m0s ago; threshold is 3m0s"]
    assert aggregate(["a", "b"]) == "[a, b]"


def test_a_failing_check_is_logged_once(node: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="noded.readiness")
    for _ in range(5):
        ready(node)
    lines = [r.getMessage() for r in caplog.records if r.name == "noded.readiness"]
    assert len(lines) == 1 and "cni plugin not initialized" in lines[0]


def test_a_condition_keeps_its_transition_time_until_its_status_changes(node: Any) -> None:
    from controlplane.api.models import Node

    write_conflist(node)
    install_plugin(node)
    node.readiness.check(node.runtime, node.cni, force=True)
    posted = node.node_status.conditions()
    old = Node.decode({"status": {"conditions": [{**c, "lastTransitionTime": "2026-01-01T00:00:00Z"} for c in posted]}})
    again = {c["type"]: c for c in node.node_status.conditions(old)}
    assert again["Ready"]["status"] == "True" and again["Ready"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    node.runtime.broken = RuntimeError("runc is gone")
    node.readiness.check(node.runtime, node.cni, force=True)
    flipped = {c["type"]: c for c in node.node_status.conditions(old)}
    assert flipped["Ready"]["status"] == "False" and flipped["Ready"]["lastTransitionTime"] != "2026-01-01T00:00:00Z"
