"""``kubelab demo``: deploy the hello app with the real kubectl and show a service VIP at work.

Steps: apply a Deployment of 3 hello pods and a Service (ClusterIP + NodePort 30080); wait for the
rollout; show the pods spread over the workers; curl the VIP from the host (10 requests, answers
from pods on different nodes); the same VIP from inside a pod (``kubectl exec`` … ``wget``); the
NodePort on every worker's address; then where to look underneath.

Every request goes to an address inside the lab (the service network, 192.168.56.0/24), never off
the machine.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import urllib.error
import urllib.request
from typing import Any

from lab import state, topology

HELLO_IMAGE = "192.168.56.1:5000/kubelab/hello:latest"
NODE_PORT = 30080
MANIFEST = f"""\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: hello
  labels: {{app: hello}}
spec:
  replicas: 3
  selector:
    matchLabels: {{app: hello}}
  template:
    metadata:
      labels: {{app: hello}}
    spec:
      containers:
      - name: hello
        image: {HELLO_IMAGE}
        ports:
        - {{name: http, containerPort: 8080}}
        env:
        - name: POD_NAME
          valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
        - name: NODE_NAME
          valueFrom: {{fieldRef: {{fieldPath: spec.nodeName}}}}
        readinessProbe:
          httpGet: {{path: /healthz, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: hello
spec:
  type: NodePort
  selector: {{app: hello}}
  ports:
  - {{name: http, port: 80, targetPort: http, nodePort: {NODE_PORT}}}
"""


class DemoError(Exception):
    pass


def kubectl(*args: str, input_text: str | None = None, timeout: float = 180) -> str:
    exe = shutil.which("kubectl")
    if exe is None:
        raise DemoError("kubectl is not installed: run `sudo make deps`")
    res = subprocess.run(
        [exe, "--kubeconfig", str(state.ADMIN_KUBECONFIG), *args],
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if res.returncode != 0:
        raise DemoError(f"`kubectl {' '.join(args)}` failed: {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout


def http_get(url: str, timeout: float = 3) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return str(resp.read().decode().strip())


def show(cmd: str, output: str) -> None:
    print(f"\n$ {cmd}\n{output.rstrip()}", flush=True)


def run_demo() -> dict[str, Any]:
    """Run the demo; return what it saw (the e2e test checks it)."""
    seen: dict[str, Any] = {}
    show("kubectl apply -f hello.yaml", kubectl("apply", "-f", "-", input_text=MANIFEST))
    show("kubectl rollout status deployment/hello", kubectl("rollout", "status", "deployment/hello", "--timeout=180s"))
    show("kubectl get pods -o wide", kubectl("get", "pods", "-l", "app=hello", "-o", "wide"))
    pods = json.loads(kubectl("get", "pods", "-l", "app=hello", "-o", "json"))["items"]
    seen["pod_nodes"] = {p["metadata"]["name"]: p["spec"].get("nodeName") for p in pods}
    svc = json.loads(kubectl("get", "service", "hello", "-o", "json"))
    vip = svc["spec"]["clusterIP"]
    seen["vip"] = vip
    show("kubectl get service hello", kubectl("get", "service", "hello"))

    answers: collections.Counter[str] = collections.Counter()
    for _ in range(10):
        try:
            answers[http_get(f"http://{vip}/")] += 1
        except (OSError, urllib.error.URLError) as exc:
            answers[f"error: {exc}"] += 1
    seen["host_answers"] = dict(answers)
    show(
        f"for i in $(seq 10); do curl -s http://{vip}/; done | sort | uniq -c",
        "\n".join(f"{n:>7} {a}" for a, n in sorted(answers.items())),
    )

    # From inside a pod: pick one on a node other than the first pod's, if there is one.
    nodes = sorted({n for n in seen["pod_nodes"].values() if n})
    client = next((p for p, n in seen["pod_nodes"].items() if n == nodes[-1]), None) if nodes else None
    if client:
        out = kubectl("exec", client, "--", "wget", "-qO-", f"http://{vip}/", timeout=30)
        seen["pod_answer"] = out.strip()
        show(f"kubectl exec {client} -- wget -qO- http://{vip}/", out)

    plan = state.read_plan() or {"workers": []}
    lab = topology.plan_lab(max(1, len(plan["workers"])))
    node_port_answers: dict[str, str] = {}
    for node in lab.workers:
        url = f"http://{node.ip}:{NODE_PORT}/"
        try:
            node_port_answers[node.name] = http_get(url)
        except (OSError, urllib.error.URLError) as exc:
            node_port_answers[node.name] = f"error: {exc}"
        show(f"curl {url}", node_port_answers[node.name])
    seen["node_port_answers"] = node_port_answers

    w = lab.workers[0].name if lab.workers else "kl-node1"
    some_pod = next(iter(seen["pod_nodes"]), "hello-…")
    print(
        f"""
Where to look (as root):
  ip netns list                                        # kl-* are nodes; the others are pods
  ip netns exec <pod netns> ip addr                    # a pod's eth0 and its IP
  ip netns exec {w} bridge link                       # the pods' veths on the node's cni0 bridge
  ip netns exec {w} ip route                          # routes to the other nodes' pod CIDRs
  ip netns exec {w} iptables -t nat -S KUBE-SERVICES  # the VIP's entry: -d {vip}/32 … -j KUBE-SVC-…
  ip netns exec {w} iptables -t nat -S | grep -e KUBE-SVC -e KUBE-SEP   # the random DNAT to each pod
  kubectl get endpointslices -l kubernetes.io/service-name=hello -o wide
  kubectl describe pod {some_pod}
""",
        flush=True,
    )
    return seen


def cmd_demo(args: argparse.Namespace) -> int:
    if state.read_plan() is None:
        print("No lab is up: run `sudo kubelab up` first.")
        return 1
    try:
        run_demo()
    except DemoError as exc:
        print(f"kubelab demo: {exc}")
        return 1
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help="deploy the hello app and show its service VIP across nodes")
    p.set_defaults(func=cmd_demo)
