"""The same lab with the reference CNI plugins and with etcd as the store (issue 5's second runs).

A shorter scenario than test_lab.py: nodes Ready, a Deployment across both workers, the VIP from
the host reaching every backend, a pod on one node reaching a pod on the other, and `down` leaving
the machine as it was.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.test_lab import http_get, kubectl, kubectl_json, lab, pods, ready
from tests.helpers.wait import wait_for

DEPLOY = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec:
  replicas: 2
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      containers:
      - name: hello
        image: 192.168.56.1:5000/kubelab/hello:latest
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: hello}
spec:
  selector: {app: hello}
  ports: [{port: 80, targetPort: 8080}]
"""


@pytest.fixture(scope="module", params=[["--cni", "reference"], ["--store", "etcd"]], ids=["reference-cni", "etcd"])
def variant(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    yield from lab("--workers", "2", *request.param)


def test_variant_runs_pods_across_nodes_behind_a_vip(variant: dict[str, str]) -> None:
    kubectl("apply", "-f", "-", input_text=DEPLOY)
    wait_for(lambda: len([p for p in pods() if ready(p)]) == 2, timeout=120, message="2 ready pods")
    ps = pods()
    vip = kubectl_json("get", "service", "hello")["spec"]["clusterIP"]
    names = {p["metadata"]["name"] for p in ps}
    seen: set[str] = set()

    def every_backend() -> bool:
        answer = http_get(f"http://{vip}/")
        seen.update(n for n in names if n in answer)
        return seen == names

    wait_for(every_backend, timeout=30, interval=0, message="both backends through the VIP")
    # the scheduler spreads a Deployment's pods over the workers
    assert {p["spec"]["nodeName"] for p in ps} == {"kl-node1", "kl-node2"}
    a, b = ps
    # pod to pod across nodes, no NAT: the answer names the other pod
    out = kubectl("exec", a["metadata"]["name"], "--", "wget", "-qO-", f"http://{b['status']['podIP']}:8080/")
    assert b["metadata"]["name"] in out
