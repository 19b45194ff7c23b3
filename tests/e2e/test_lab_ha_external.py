"""``kubelab up --control-planes 3 --etcd external``: the other topology the seeds name (issue 17).

The etcd members run in namespaces of their own (``kl-etcd1..3``, 192.168.56.31–.33), the control
planes ``kl-cp1..3`` run none; brought up, looked at and used once.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.e2e.test_lab import kubectl, kubectl_json, kubelab, lab
from tests.helpers.wait import wait_for

ETCD = {"kl-etcd1": "192.168.56.31", "kl-etcd2": "192.168.56.32", "kl-etcd3": "192.168.56.33"}


@pytest.fixture(scope="module")
def external_lab() -> Iterator[dict[str, str]]:
    yield from lab("--control-planes", "3", "--etcd", "external", "--workers", "1", "--no-dashboard")


def test_external_etcd_members_serve_three_control_planes(external_lab: dict[str, str]) -> None:
    assert "etcd members kl-etcd1, kl-etcd2, kl-etcd3" in external_lab["up_output"], external_lab["up_output"]
    members = json.loads(kubelab("etcd", "member", "list", "-w", "json").stdout)["members"]
    assert sorted((m["name"], m["clientURLs"][0]) for m in members) == sorted(
        (n, f"https://{ip}:2379") for n, ip in ETCD.items()
    )
    status = kubelab("status").stdout
    comps = {tuple(ln.split()[:2]) for ln in status.splitlines() if ln.startswith("kl-")}
    assert {("kl-etcd1", "etcd"), ("kl-cp2", "controlplane")} <= comps, status
    assert not any(node.startswith("kl-cp") and name == "etcd" for node, name in comps), status
    kubectl("create", "configmap", "on-external-etcd", "--from-literal=a=1")
    keys = kubelab("etcd", "get", "/registry/configmaps/default/on-external-etcd", "--keys-only").stdout
    assert "/registry/configmaps/default/on-external-etcd" in keys
    wait_for(
        lambda: len(kubectl_json("get", "endpoints", "kubernetes")["subsets"][0]["addresses"]) == 3,
        timeout=30, message="three API servers in default/kubernetes",
    )  # fmt: skip
