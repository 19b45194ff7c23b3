"""``kubelab status`` and ``kubelab node stop|start``: look at the running lab, and break it on purpose.

Role: ``status`` prints the nodes, every supervised process with its health (``lab/health.py``), the
etcd members and who leads, and which control plane holds each Lease; ``node stop`` stops a node's
processes and cuts its wire to kl0 (a worker's pods keep running; with HA a control plane, an etcd
member or the load balancer may be stopped too), ``node start`` puts both back.

Concurrency: one CLI thread; the supervisor serialises the stop/start requests.
"""

from __future__ import annotations

import argparse

from controlplane.api import errors
from lab import clusterapi, health, state, supervisor, topology
from lab.dashboard import setup as dashboard
from lab.labcmd import NODE_MONITOR_GRACE, POD_EVICTION_TIMEOUT, api, lab_cluster, node_ready, say, supervisor_alive


def cmd_status(args: argparse.Namespace) -> int:
    plan = state.read_plan()
    if plan is None:
        from lab import vagrantlab  # the VM lab (vagrant up) when no namespace lab is here

        if vagrantlab.present():
            return vagrantlab.status()
    if plan is None:
        say("No lab is up. Start one with `sudo kubelab up`.")
        return 1
    try:
        st = supervisor.request(state.SOCKET, {"cmd": "status"}, timeout=5)
    except OSError:
        say("The lab's supervisor is not running (the lab is broken): `sudo kubelab down` removes what is left.")
        return 1
    cps = int(plan.get("control_planes", 1))
    ha = f"{cps} control planes behind HAProxy, etcd {plan.get('etcd_topology', 'stacked')}; " if cps > 1 else ""
    workers = len(plan["workers"])
    say(f"Lab: {ha}{workers} workers, store {plan['store']}, CNI {plan['cni']}; supervisor pid {st['pid']}")
    try:
        nodes = api("GET", "/api/v1/nodes").get("items", [])
        say("\nNODE        READY  POD CIDR          ADDRESS")
        for n in nodes:
            addr = next(
                (a["address"] for a in n.get("status", {}).get("addresses", []) if a["type"] == "InternalIP"), ""
            )
            say(f"{n['metadata']['name']:<11} {node_ready(n)!s:<6} {n['spec'].get('podCIDR', ''):<17} {addr}")
    except (errors.ApiError, *clusterapi.TRANSPORT_ERRORS) as exc:
        say(f"\n(API server not answering: {exc})")
    healths: dict[str, health.Health] = {}
    try:
        healths = {h.key: h for h in health.check(st["components"], lab_cluster(plan))}
    except (errors.ApiError, *clusterapi.TRANSPORT_ERRORS) as exc:
        say(f"\n(component health unknown: {exc})")
    say("\nNODE        COMPONENT      PID      RESTARTS  HEALTH     LOG")
    for c in st["components"]:
        pid = str(c["pid"]) if c["pid"] else ("stopped" if not c["wanted"] else "starting")
        h = healths.get(f"{c['node']}/{c['name']}")
        verdict = "unknown" if h is None else ("stopped" if h.stopped else "healthy" if h.healthy else "UNHEALTHY")
        say(f"{c['node']:<11} {c['name']:<14} {pid:<8} {c['restarts']:<9} {verdict:<10} {c['log']}")
    from lab import etcdcmd

    for line in etcdcmd.status_lines(plan, lambda path: api("GET", path)):  # etcd members, Lease holders
        say(line)
    bad = [h for h in healths.values() if not h.healthy]
    if bad:
        say("\nLast errors:\n" + health.report(bad))
    say(f"\nkubeconfig: {state.ADMIN_KUBECONFIG}")
    if dashboard.summary(plan):
        say(dashboard.summary(plan).strip())
    return 0


def cmd_node(args: argparse.Namespace) -> int:
    plan = state.read_plan()
    if plan is None:
        from lab import vagrantlab  # the VM lab: cut or restore the VM's lab-network link

        if vagrantlab.present():
            return vagrantlab.node(args.action, args.name)
    if plan is None or not supervisor_alive():
        say("No lab is up.")
        return 1
    lab = topology.lab_of(plan)
    try:
        node = lab.node(args.name)
    except topology.TopologyError as exc:
        say(f"kubelab node: {exc}")
        return 1
    if not node.is_worker:
        return control_plane_node(lab, node, args.action)
    if args.action == "stop":
        supervisor.request(state.SOCKET, {"cmd": "stop-node", "node": node.name})
        topology.set_node_link(lab, node.name, up=False)
        # keep service VIPs reachable from the host: route them through a worker that is still up
        other = next((w for w in lab.workers if w.name != node.name), None)
        if other is not None:
            topology.install_host_routes(lab, {}, other.ip)
        say(
            f"{node.name}: components stopped and its link to {topology.BRIDGE} cut; its pods' containers keep running."
        )
        say(
            f"  The control plane marks it NotReady after {NODE_MONITOR_GRACE} and evicts its pods after "
            f"{POD_EVICTION_TIMEOUT} more: watch with `kubectl get nodes,pods -o wide -w`."
        )
    else:
        topology.set_node_link(lab, node.name, up=True)
        supervisor.request(state.SOCKET, {"cmd": "start-node", "node": node.name})
        say(f"{node.name}: link restored and components started; it turns Ready at its next heartbeat.")
    return 0


def control_plane_node(lab: topology.LabNet, node: topology.NodeNet, action: str) -> int:
    """``kubelab node stop|start`` of a control plane, an etcd member or the load balancer (HA)."""
    if not lab.ha:
        say("kubelab node: the single control plane cannot be stopped (the lab would have no API); "
            "practise control-plane failures with `kubelab up --control-planes 3`")  # fmt: skip
        return 1
    if action == "stop":
        # A power failure, not a shutdown: the wire first, then SIGKILL — so an etcd leader cannot
        # hand its leadership over on the way out and the others must notice and elect (Raft).
        topology.set_node_link(lab, node.name, up=False)
        supervisor.request(state.SOCKET, {"cmd": "stop-node", "node": node.name, "kill": True})
        say(f"{node.name}: its link to {topology.BRIDGE} cut and its processes killed (as if its power failed).")
        if node.role != "lb":
            say("  Watch: `kubelab etcd endpoint status -w table` (a new etcd leader if it led), "
                "`kubectl get lease -n kube-system -w` (the scheduler and controller-manager Leases move "
                "if it held them), `kubelab status`.")  # fmt: skip
        else:
            say("  The API endpoint 192.168.56.10 is gone with it: kubectl fails until `kubelab node start kl-lb`.")
    else:
        topology.set_node_link(lab, node.name, up=True)
        supervisor.request(state.SOCKET, {"cmd": "start-node", "node": node.name})
        say(f"{node.name}: link restored and its processes started; its etcd member catches up from the leader.")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    status = sub.add_parser("status", help="show the lab's nodes, processes and log files")
    status.set_defaults(func=cmd_status)
    node = sub.add_parser("node", help="stop or start a node (practise node and control-plane failures)")
    node.add_argument("action", choices=["stop", "start"])
    node.add_argument("name", help="a node's name, e.g. kl-node1; with HA also kl-cp2, kl-etcd1, kl-lb")
    node.set_defaults(func=cmd_node)
