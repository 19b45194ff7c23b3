"""NetworkPolicy through the real API server with the real kubectl 1.33: apply, get, describe, bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.helpers.apiserver import RunningApiServer
from tests.helpers.kubectl import kubectl_binary

POLICY = """
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: hello-allow
  namespace: default
spec:
  podSelector:
    matchLabels: {app: hello}
  ingress:
  - from:
    - podSelector:
        matchLabels: {access: "true"}
    - namespaceSelector:
        matchLabels: {team: a}
    - ipBlock: {cidr: 10.244.0.0/16, except: [10.244.9.0/24]}
    ports:
    - port: 8080
    - port: http
      protocol: TCP
    - port: 9000
      endPort: 9010
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all
  namespace: default
spec:
  podSelector: {}
  policyTypes: [Ingress, Egress]
"""


def _kubectl(
    server: RunningApiServer, cache: Path, *args: str, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [kubectl_binary("1.33"), "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        input=input,
        timeout=60,
    )


def test_kubectl_apply_get_describe_delete(server: RunningApiServer, tmp_path: Path) -> None:
    r = _kubectl(server, tmp_path, "apply", "-f", "-", input=POLICY)
    assert r.returncode == 0, r.stderr
    assert "networkpolicy.networking.k8s.io/hello-allow created" in r.stdout
    try:
        r = _kubectl(server, tmp_path, "get", "networkpolicy")
        assert r.returncode == 0, r.stderr
        lines = [line.split() for line in r.stdout.splitlines()]
        assert lines[0] == ["NAME", "POD-SELECTOR", "AGE"]
        rows = {line[0]: line for line in lines[1:]}
        assert rows["hello-allow"][1] == "app=hello"
        assert rows["deny-all"][1] == "<none>"
        obj = json.loads(_kubectl(server, tmp_path, "get", "netpol", "hello-allow", "-o", "json").stdout)
        spec = obj["spec"]
        assert spec["policyTypes"] == ["Ingress"]  # defaulted
        assert [p["protocol"] for p in spec["ingress"][0]["ports"]] == ["TCP", "TCP", "TCP"]
        r = _kubectl(server, tmp_path, "describe", "networkpolicy", "hello-allow")
        assert r.returncode == 0, r.stderr
        assert "PodSelector:     app=hello" in r.stdout
        assert "access=true" in r.stdout and "10.244.9.0/24" in r.stdout
        assert "9000-9010/TCP" in r.stdout
        # re-apply: kubectl patches the atomic ingress list back (defaulted protocols differ, as on
        # a real cluster); the stored spec comes out the same
        r = _kubectl(server, tmp_path, "apply", "-f", "-", input=POLICY)
        assert r.returncode == 0, r.stderr
        again = json.loads(_kubectl(server, tmp_path, "get", "netpol", "hello-allow", "-o", "json").stdout)
        assert again["spec"] == spec
        assert "networkpolicies" in _kubectl(server, tmp_path, "api-resources").stdout
    finally:
        r = _kubectl(server, tmp_path, "delete", "-f", "-", input=POLICY)
        assert r.returncode == 0, r.stderr
    r = _kubectl(server, tmp_path, "get", "networkpolicy", "hello-allow")
    assert r.returncode != 0 and "NotFound" in r.stderr


@pytest.mark.parametrize(
    ("spec", "field", "fragment"),
    [
        (
            {"podSelector": {}, "ingress": [{"ports": [{"port": 0}]}]},
            "spec.ingress[0].ports[0].port",
            "between 1 and 65535",
        ),
        (
            {"podSelector": {}, "ingress": [{"ports": [{"port": 80, "endPort": 79}]}]},
            "spec.ingress[0].ports[0].endPort",
            "greater than or equal",
        ),
        (
            {"podSelector": {}, "ingress": [{"ports": [{"port": "http", "endPort": 90}]}]},
            "spec.ingress[0].ports[0].endPort",
            "non-numeric",
        ),
        (
            {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/24"]}}]}]},
            "spec.egress[0].to[0].ipBlock.except[0]",
            "strict subset",
        ),
        (
            {"podSelector": {}, "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0/8"}}]}]},
            "spec.egress[0].to[0].ipBlock.cidr",
            "valid CIDR",
        ),
        ({"podSelector": {"matchLabels": {"a": "b c"}}}, "spec.podSelector", "Invalid value"),
        ({"podSelector": {}, "ingress": [{"from": [{}]}]}, "spec.ingress[0].from[0]", "must specify a peer"),
        (
            {"podSelector": {}, "ingress": [{"ports": [{"port": 80, "protocol": "ICMP"}]}]},
            "spec.ingress[0].ports[0].protocol",
            "Unsupported",
        ),
        ({"podSelector": {}, "policyTypes": ["Sideways"]}, "spec.policyTypes[0]", "Unsupported"),
    ],
)
def test_bad_policies_are_rejected_with_field_paths(
    http: httpx.Client, spec: dict[str, object], field: str, fragment: str
) -> None:
    body = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "bad"}, "spec": spec}
    r = http.post("/apis/networking.k8s.io/v1/namespaces/default/networkpolicies", json=body)
    assert r.status_code == 422, r.text
    causes = r.json()["details"]["causes"]
    assert any(c["field"] == field and fragment in c["message"] for c in causes), causes
    assert http.get("/apis/networking.k8s.io/v1/namespaces/default/networkpolicies/bad").status_code == 404


def test_discovery_and_openapi(http: httpx.Client) -> None:
    g = http.get("/apis/networking.k8s.io/v1").json()
    res = {r["name"]: r for r in g["resources"]}
    assert res["networkpolicies"]["namespaced"] is True
    assert res["networkpolicies"]["shortNames"] == ["netpol"]
    doc = http.get("/openapi/v3/apis/networking.k8s.io/v1").json()
    assert "io.k8s.api.networking.v1.NetworkPolicy" in doc["components"]["schemas"]
    assert "/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies" in doc["paths"]
