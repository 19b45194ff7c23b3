"""``kubelab trace`` over the nodes' authenticated debug endpoints, on the one-machine lab (issue 14).

One lab (2 workers) with the demo. From the host (the root namespace, reaching the nodes' addresses
over kl0, 192.168.56.0/24):
- each worker's network agent (:9098 ``/debug/network``) and proxy (:10253 ``/debug/rules``) answer
  401 without credentials, 403 to a user the API server does not authorize, 200 to the admin;
- ``kubelab trace --from pod/… --to svc/hello:80`` answers with the DNAT chain and the routes read
  from those endpoints, and runs neither ``nsenter`` nor ``ip netns exec`` / ``ip -n`` (both are
  shadowed on its PATH by recorders). Lab brought up and down by the module fixture (run under
  ``flock /tmp/kubelab-lab.lock``).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from controlplane.client.kubeconfig import load_kubeconfig
from tests.e2e.test_lab import KUBECONFIG, kubectl_json, kubelab, lab, pods, ready
from tests.helpers.wait import wait_for

NODES = {"kl-node1": "192.168.56.11", "kl-node2": "192.168.56.12"}


@pytest.fixture(scope="module")
def lab2() -> Iterator[dict[str, str]]:
    from lab import state

    if state.read_plan() is not None:  # `kubelab up` would say "already up": never test (and down) another's lab
        pytest.fail("a lab is already up on this machine: not ours, not touching it")
    up = lab("--workers", "2")
    got = next(up)
    try:
        res = kubelab("demo", timeout=400)
        assert res.returncode == 0, res.stdout + res.stderr
        yield got
    finally:
        up.close()  # `kubelab down` and the check that the machine is as it was


def get(url: str, ctx: ssl.SSLContext) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=10) as resp:
            body = resp.read()
            return resp.status, json.loads(body) if resp.headers.get("Content-Type") == "application/json" else body
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def anonymous() -> ssl.SSLContext:
    cfg = load_kubeconfig(KUBECONFIG)
    assert cfg.ca_data is not None or cfg.ca_file
    return ssl.create_default_context(cadata=cfg.ca_data.decode()) if cfg.ca_data else ssl.create_default_context(
        cafile=cfg.ca_file
    )


def as_user(kubeconfig: str) -> ssl.SSLContext:
    ctx = load_kubeconfig(kubeconfig).ssl_context()
    assert isinstance(ctx, ssl.SSLContext)
    return ctx


def test_the_debug_endpoints_are_authenticated_and_authorized(lab2: dict[str, str]) -> None:
    res = kubelab("user", "add", "trace-nobody")
    assert res.returncode == 0, res.stderr
    nobody = res.stdout.strip()
    try:
        for node, ip in NODES.items():
            for url in (f"https://{ip}:9098/debug/network", f"https://{ip}:10253/debug/rules?format=json"):
                wait_for(lambda u=url: get(u, as_user(KUBECONFIG))[0] == 200, 60, 1.0, f"{url} answers the admin")
                code, body = get(url, anonymous())
                assert code == 401 and body["reason"] == "Unauthorized", (url, body)
                code, body = get(url, as_user(nobody))
                assert code == 403 and body["reason"] == "Forbidden", (url, body)
                assert body["message"].startswith('forbidden: User "trace-nobody" cannot get path "/debug/')
            code, net = get(f"https://{ip}:9098/debug/network", as_user(KUBECONFIG))
            assert net["node"] == node and net["addresses"]["eth0"] == ip
            assert "KUBE-SERVICES" in net["iptables"]["text"]
            local = [p for p in pods() if p["spec"]["nodeName"] == node and ready(p)]
            assert {p["status"]["podIP"] for p in local} <= {p.get("ip") for p in net["pods"]}
            assert all(p["veth"].startswith("veth") and p["mac"] for p in net["pods"])
            code, rules = get(f"https://{ip}:10253/debug/rules?format=json", as_user(KUBECONFIG))
            hello = [s for s in rules["services"] if s["servicePort"].startswith("default/hello")]
            assert hello and len(hello[0]["endpoints"]) == 3
    finally:
        Path(nobody).unlink(missing_ok=True)


def test_trace_reads_the_dnat_chain_and_routes_from_the_endpoints_without_entering_a_namespace(
    lab2: dict[str, str], tmp_path: Path
) -> None:
    from proxy.rules import service_chain

    # Recorders in front of the real tools: nsenter always fails; ip records and runs the real one.
    record = tmp_path / "ran"
    real_ip = shutil.which("ip")
    (tmp_path / "nsenter").write_text(f'#!/bin/sh\necho "nsenter $*" >> {record}\nexit 99\n')
    (tmp_path / "ip").write_text(f'#!/bin/sh\necho "ip $*" >> {record}\nexec {real_ip} "$@"\n')
    for tool in ("nsenter", "ip"):
        (tmp_path / tool).chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}

    client = next(p for p in pods() if ready(p))
    node = client["spec"]["nodeName"]
    slices = kubectl_json("get", "endpointslices", "-l", "kubernetes.io/service-name=hello")["items"]
    endpoints = {f"{a}:8080": e["nodeName"] for s in slices for e in s.get("endpoints") or [] for a in e["addresses"]}
    res = kubelab("trace", "--from", f"pod/{client['metadata']['name']}", "--to", "svc/hello:80", timeout=60, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    print(out)  # the answer, for the reader of a failed (or -s) run
    assert f"({node}'s iptables-save, from its network agent) nat PREROUTING" in out
    assert service_chain("KUBE-SVC-", "default/hello:http", "tcp") in out
    for ep, ep_node in endpoints.items():
        assert f"DNAT to {ep}" in out
        if ep_node != node:
            query = f"ip route get {ep.split(':')[0]} from {client['status']['podIP']} iif cni0"
            assert f"{query}` in {node} → via {NODES[ep_node]} dev eth0" in out
            assert f"over the node network (eth0) to {ep_node}" in out
    assert f"{node}: https://{NODES[node]}:9098/debug/network" in out
    assert f"https://{NODES[node]}:9098/debug/network/route" in out
    ran = record.read_text().splitlines() if record.exists() else []
    assert not [c for c in ran if c.startswith("nsenter") or " netns " in f" {c} " or " -n " in f" {c} "], ran
    # and the same from the host, through the host's route over kl0
    res = kubelab("trace", "--to", "svc/hello:80", timeout=60, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "the host (root namespace, 192.168.56.1 on kl0)" in res.stdout and "SNAT by" in res.stdout
