"""``kubelab controlplane``: the API server with the scheduler and controller-manager in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.helpers.apiserver import start_apiserver
from tests.helpers.wait import wait_for


def node(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "addresses": [{"type": "InternalIP", "address": "192.168.56.11"}],
        },
    }


def test_deployment_becomes_scheduled_pods(tmp_path: Path) -> None:
    srv = start_apiserver(tmp_path, store="sqlite", controlplane=True)
    try:
        with srv.http() as c:
            assert c.post("/api/v1/nodes", json=node("kl-node1")).status_code == 201
            dep = {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "cp-web"},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "cp-web"}},
                    "template": {
                        "metadata": {"labels": {"app": "cp-web"}},
                        "spec": {"containers": [{"name": "c", "image": "kubelab/hello"}]},
                    },
                },
            }
            assert c.post("/apis/apps/v1/namespaces/default/deployments", json=dep).status_code == 201

            def scheduled() -> list[str]:
                pods = c.get("/api/v1/namespaces/default/pods", params={"labelSelector": "app=cp-web"}).json()["items"]
                nodes = [p["spec"].get("nodeName") for p in pods]
                return nodes if len(nodes) == 2 and all(nodes) else []

            assert wait_for(scheduled, timeout=30, message="2 pods created and scheduled") == ["kl-node1", "kl-node1"]
            # the node IPAM controller gave the node a pod CIDR from --cluster-cidr
            wait_for(
                lambda: c.get("/api/v1/nodes/kl-node1").json()["spec"].get("podCIDR", "").startswith("10.244."),
                timeout=20,
                message="node podCIDR",
            )
    finally:
        srv.stop()
