"""A projected ServiceAccount volume in a real runc container: the container reads the token, the
CA and its namespace at /var/run/secrets/kubernetes.io/serviceaccount, and when the token is due
the pod worker swaps in a new one (``..data`` symlink swap) that the running container sees —
never an empty or half-written file."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from noded.volumes import TokenManager
from tests.helpers.netns import NetnsFactory
from tests.helpers.registry import Registry
from tests.helpers.wait import wait_for
from tests.privileged.noded.test_podworker_real import Node, converge, mkpod

MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"


class Tokens:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0
        self.issued = 0

    def clock(self) -> float:
        return self.t

    def request(self, ns: str, sa: str, body: dict[str, Any]) -> dict[str, Any]:
        self.issued += 1
        exp = datetime.fromtimestamp(self.t + body["spec"]["expirationSeconds"], UTC)
        return {
            "spec": {"expirationSeconds": body["spec"]["expirationSeconds"]},
            "status": {"token": f"token-{self.issued}", "expirationTimestamp": exp.strftime("%Y-%m-%dT%H:%M:%SZ")},
        }


@pytest.fixture
def node(tmp_path: Path, netns: NetnsFactory, registry: Registry) -> Iterator[Node]:
    n = Node(tmp_path, netns("node"), registry)
    try:
        yield n
    finally:
        n.cleanup()


def test_token_volume_is_seen_and_refreshed_atomically(node: Node) -> None:
    tokens = Tokens()
    node.worker.tokens = TokenManager(tokens.request, clock=tokens.clock)
    node.api.objects[("configMap", "default", "kube-root-ca.crt")] = {"data": {"ca.crt": "THE-CA\n"}}
    vol = {
        "name": "kube-api-access-t3st5",
        "projected": {
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            ],
            "defaultMode": 420,
        },
    }
    reader = f'while true; do t=$(cat {MOUNT}/token); echo "read:$t"; sleep 0.01; done'
    pod = mkpod(
        "reader",
        [
            {
                "name": "main",
                "image": node.image("busybox"),
                "command": ["sh", "-c", reader],
                "volumeMounts": [{"name": vol["name"], "mountPath": MOUNT, "readOnly": True}],
            }
        ],
        volumes=[vol],
        serviceAccountName="default",
        terminationGracePeriodSeconds=1,
    )
    st = converge(node, pod, lambda s: s.get("phase") == "Running")
    cid = st["containerStatuses"][0]["containerID"][7:]

    def cat(name: str) -> str:
        return node.runtime.exec_sync(cid, ["cat", f"{MOUNT}/{name}"], 5).stdout.decode()

    assert cat("token") == "token-1" and cat("ca.crt") == "THE-CA\n" and cat("namespace") == "default"
    assert "..data" in node.runtime.exec_sync(cid, ["ls", "-a", MOUNT], 5).stdout.decode().split()
    # writes are refused inside the container (read-only mount)
    assert node.runtime.exec_sync(cid, ["sh", "-c", f"echo x > {MOUNT}/token"], 5).exit_code != 0
    # 80% of the lifetime later the next sync swaps in a new token; the running container sees it
    tokens.t += 0.8 * 3607 + 1
    node.worker.sync_pod(pod)
    wait_for(lambda: cat("token") == "token-2", timeout=10, message="the refreshed token in the container")
    log = Path(node.runtime.container_status(cid).log_path)
    wait_for(lambda: "read:token-2" in log.read_text(), timeout=10, message="the reader to see the new token")
    reads = {line.split("read:", 1)[1].strip() for line in log.read_text().splitlines() if "read:" in line}
    assert reads == {"token-1", "token-2"}  # never an empty or partial token
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    node.worker.sync_pod(pod)
