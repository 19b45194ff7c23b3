"""Typed read models: what decoding an object once at the informer boundary costs.

For a lab Node, a Service and a demo Pod (as the API server sends them): the time to decode the
wire dict into its read model (``controlplane.api.models``, msgspec), beside the time to parse the
same object's JSON (``orjson.loads``), which every informer already pays per watch event. Anchor:
the decode should cost no more than the JSON parse (≤ 1×).

Run: ``python -m tests.bench.bench_models [--rounds N]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import orjson

from controlplane.api.models import Node, Pod, Service
from tests.bench.stats import Summary, fmt_ratio, print_table

NODE: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Node",
    "metadata": {
        "name": "kl-node1",
        "uid": "4c1d6a3e-3b0e-4b8e-9d59-3f6a1e2b7c11",
        "resourceVersion": "1234",
        "creationTimestamp": "2026-12-06T10:00:00Z",
        "labels": {
            "kubernetes.io/hostname": "kl-node1",
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": "amd64",
        },
        "managedFields": [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1"}],
    },
    "spec": {"podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]},
    "status": {
        "capacity": {"cpu": "2", "memory": "24576000Ki", "ephemeral-storage": "263174212Ki", "pods": "110"},
        "allocatable": {"cpu": "2", "memory": "24313856Ki", "ephemeral-storage": "263174212Ki", "pods": "110"},
        "addresses": [{"type": "InternalIP", "address": "192.168.56.11"}, {"type": "Hostname", "address": "kl-node1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {"kernelVersion": "6.1.0", "osImage": "Debian GNU/Linux 12", "kubeletVersion": "v1.30.0-kubelab"},
        "conditions": [
            {
                "type": t,
                "status": "False" if t != "Ready" else "True",
                "reason": f"Kubelet{t}",
                "message": f"kubelet {t}",
                "lastHeartbeatTime": "2026-12-06T10:00:10Z",
                "lastTransitionTime": "2026-12-06T10:00:00Z",
            }
            for t in ("MemoryPressure", "DiskPressure", "PIDPressure", "NetworkUnavailable", "Ready")
        ],
    },
}
SERVICE: dict[str, Any] = {
    "metadata": {
        "name": "hello",
        "namespace": "default",
        "uid": "u",
        "resourceVersion": "77",
        "labels": {"app": "hello"},
    },
    "spec": {
        "type": "NodePort",
        "clusterIP": "10.96.0.20",
        "clusterIPs": ["10.96.0.20"],
        "selector": {"app": "hello"},
        "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30080}],
        "sessionAffinity": "None",
        "externalTrafficPolicy": "Cluster",
        "internalTrafficPolicy": "Cluster",
    },
    "status": {"loadBalancer": {}},
}
POD: dict[str, Any] = {
    "metadata": {
        "name": "hello-7c9d8-abcde",
        "namespace": "default",
        "uid": "u2",
        "resourceVersion": "90",
        "labels": {"app": "hello", "pod-template-hash": "7c9d8"},
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "hello-7c9d8", "uid": "u3", "controller": True}
        ],
    },
    "spec": {
        "nodeName": "kl-node1",
        "containers": [
            {
                "name": "hello",
                "image": "192.168.56.1:5000/kubelab/hello:latest",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                "terminationMessagePath": "/dev/termination-log",
                "imagePullPolicy": "Always",
            }
        ],
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst",
        "schedulerName": "default-scheduler",
        "tolerations": [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            }
        ],
    },
    "status": {
        "phase": "Running",
        "podIP": "10.244.1.5",
        "podIPs": [{"ip": "10.244.1.5"}],
        "hostIP": "192.168.56.11",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-06T10:00:05Z"}],
    },
}


def per_call_us(fn: Callable[[], object], n: int) -> float:
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    rows = []
    for name, model, obj in (("Node", Node, NODE), ("Service", Service, SERVICE), ("Pod", Pod, POD)):
        raw = orjson.dumps(obj)
        decode, parse = [], []
        for _ in range(args.rounds):  # interleaved, so a busy moment hits both
            decode.append(per_call_us(lambda m=model, o=obj: m.decode(o), args.n))
            parse.append(per_call_us(lambda r=raw: orjson.loads(r), args.n))
        d, p = Summary.of(decode), Summary.of(parse)
        rows.append([
            f"{name} ({len(raw)} B of JSON)",
            f"{d.median:.1f} µs ({d.p10:.1f}–{d.p90:.1f})",
            f"{p.median:.1f} µs ({p.p10:.1f}–{p.p90:.1f})",
            fmt_ratio(d.median, p.median),
            "≤ 1× the JSON parse",
        ])  # fmt: skip
    print_table(
        f"typed read model decode vs orjson.loads of the same object ({args.rounds} rounds × {args.n})",
        ["object", "Model.decode(dict)", "orjson.loads(bytes)", "ratio", "goal"],
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
