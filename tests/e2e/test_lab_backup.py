"""``kubelab backup save|restore`` on a whole lab, SQLite and etcd (issue 17's round trips).

Save while a pod runs; then delete a ConfigMap, create another and a second pod; a garbage file is
refused and changes nothing; restoring the saved file brings the deleted ConfigMap back and removes
what was created after — the second pod's containers are removed from the node — while the pod
that existed throughout keeps its containers (same container IDs, no restart): noded adopted it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_lab import kubectl, kubectl_json, kubelab, lab, node_containers, ready
from tests.helpers.wait import wait_for

POD = """\
apiVersion: v1
kind: Pod
metadata: {{name: {name}, labels: {{app: backup-test}}}}
spec:
  nodeName: kl-node1
  terminationGracePeriodSeconds: 1
  containers:
  - name: hello
    image: 192.168.56.1:5000/kubelab/hello:latest
"""


@pytest.fixture(scope="module", params=[[], ["--store", "etcd"]], ids=["sqlite", "etcd"])
def backup_lab(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    yield from lab("--workers", "1", "--no-dashboard", *request.param)


def _pod(name: str) -> dict[str, Any] | None:
    res = subprocess.run(
        ["kubectl", "--kubeconfig", "/var/lib/kubelab/admin.kubeconfig", "get", "pod", name, "-o", "json"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if res.returncode != 0:
        return None
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


def _cm_names() -> set[str]:
    return {c["metadata"]["name"] for c in kubectl_json("get", "configmaps")["items"]}


def _running(name: str) -> bool:
    p = _pod(name)
    return p is not None and ready(p)


def test_backup_restore_round_trip_adopts_pods(backup_lab: dict[str, str], tmp_path: Path) -> None:
    kubectl("apply", "-f", "-", input_text=POD.format(name="kept"))
    kubectl("create", "configmap", "deleted-after-backup", "--from-literal=a=1")
    wait_for(lambda: _running("kept"), timeout=120, message="pod kept Running")
    kept = _pod("kept")
    assert kept is not None
    kept_ids = [c["containerID"] for c in kept["status"]["containerStatuses"]]
    containers_at_backup = set(node_containers("kl-node1"))

    file = tmp_path / "cluster.backup"
    res = kubelab("backup", "save", str(file))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "revision" in res.stdout and "sha256" in res.stdout

    kubectl("delete", "configmap", "deleted-after-backup")
    kubectl("create", "configmap", "created-after-backup", "--from-literal=b=2")
    kubectl("apply", "-f", "-", input_text=POD.format(name="after"))
    wait_for(lambda: _running("after"), timeout=120, message="pod after Running")
    assert len(node_containers("kl-node1")) > len(containers_at_backup)

    # bad input: refused with a reason, nothing changed
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"this is not a backup\n" * 100)
    res = kubelab("backup", "restore", str(garbage))
    assert res.returncode == 1
    assert "not a" in res.stdout, res.stdout
    assert "created-after-backup" in _cm_names() and _running("after")

    res = kubelab("backup", "restore", str(file), timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr

    wait_for(lambda: _cm_names() >= {"deleted-after-backup"}, timeout=60, message="deleted ConfigMap back")
    assert "created-after-backup" not in _cm_names()
    assert _pod("after") is None
    # noded relisted (its watch got 410): the pod that no longer exists loses its containers ...
    wait_for(
        lambda: set(node_containers("kl-node1")) == containers_at_backup,
        timeout=90,
        message="only the containers of pods that exist after the restore",
    )
    # ... and the one that exists again keeps them: same containers, never restarted
    wait_for(lambda: _running("kept"), timeout=60, message="pod kept Ready after the restore")
    kept = _pod("kept")
    assert kept is not None
    assert [c["containerID"] for c in kept["status"]["containerStatuses"]] == kept_ids
    assert all(c["restartCount"] == 0 for c in kept["status"]["containerStatuses"])
    # the cluster takes writes again, on a revision past every one it had before
    kubectl("create", "configmap", "after-restore", "--from-literal=c=3")
    kubectl("delete", "pod", "kept", "--wait=false")


def test_kubelab_etcd_and_status_show_members_and_leases(backup_lab: dict[str, str]) -> None:
    etcd_lab = "store etcd" in kubelab("status").stdout
    res = kubelab("etcd", "endpoint", "status", "-w", "table")
    if not etcd_lab:
        assert res.returncode == 1 and "not etcd" in res.stdout, res.stdout
        return
    assert res.returncode == 0, res.stdout + res.stderr
    assert "IS LEADER" in res.stdout and "true" in res.stdout
    assert kubelab("etcd", "get", "/registry/pods", "--prefix", "--keys-only").returncode == 0
    keys = kubelab("etcd", "get", "/registry/namespaces", "--prefix", "--keys-only")
    assert keys.returncode == 0 and "/registry/namespaces/kube-system" in keys.stdout, keys.stdout
    status = kubelab("status").stdout
    assert "ETCD MEMBER" in status and "leader" in status

    def lease_held() -> bool:
        rows = [ln.split() for ln in kubelab("status").stdout.splitlines() if ln.startswith("kube-controller-manager")]
        return bool(rows) and rows[0][1] != "(none)"

    wait_for(
        lease_held,
        timeout=30,
        message="the controller-manager's Lease holder in kubelab status",
    )
