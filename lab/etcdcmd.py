"""``kubelab etcd [ARGS…]``: Debian's ``etcdctl`` aimed at the lab's etcd, and the status lines about it.

Role: let a learner look at the store of record with etcd's own tool — ``kubelab etcd member list
-w table``, ``kubelab etcd endpoint status -w table`` (leader, raft term, db size), ``kubelab etcd
get /registry/pods --prefix --keys-only`` — without knowing where the members listen: the lab's
members serve their client URL inside the control plane's network namespace, so etcdctl runs there
(``nsenter --net``) with ``--endpoints`` set to every member (and the client certificates, when
the lab's etcd serves TLS: ``plan["etcd"]["tls"]``). A SQLite lab has no etcd: a clear message.

``status_lines(plan)`` gives ``kubelab status`` each member's health and who leads, and which
identity holds each control-plane Lease in kube-system (``kube-scheduler``,
``kube-controller-manager``): what moves when a leader's node stops.

Concurrency: none; each call runs etcdctl once (``endpoint status`` and ``endpoint health``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from controlplane.api import errors
from lab import state, topology

CONTROL_PLANE_NODE = topology.CONTROL_PLANE_NAME
DEFAULT_ENDPOINTS = ["http://127.0.0.1:2379"]  # the single member of `kubelab up --store etcd`
LEASES = ("kube-scheduler", "kube-controller-manager")


def endpoints(plan: dict[str, Any]) -> list[str]:
    etcd = plan.get("etcd") or {}
    eps = etcd.get("endpoints")
    return list(eps) if eps else list(DEFAULT_ENDPOINTS)


def etcdctl_command(
    prefix: Sequence[str], endpoints: Sequence[str], tls: Mapping[str, str | None] | None, args: Sequence[str]
) -> list[str]:
    """``etcdctl ARGS`` against ``endpoints`` with the client certificate ``tls`` (ca/cert/key; None:
    plain HTTP), after ``prefix`` (an nsenter into the member's namespace, or nothing): the one
    place the lab builds etcdctl's command line (``kubelab etcd``, status, backup's health checks)."""
    argv = [*prefix, "etcdctl", "--endpoints", ",".join(endpoints)]
    if tls and tls.get("ca"):
        argv += ["--cacert", str(tls["ca"]), "--cert", str(tls.get("cert") or ""), "--key", str(tls.get("key") or "")]
    return argv + list(args)


def etcdctl_argv(plan: dict[str, Any], args: list[str]) -> list[str]:
    """The command line that runs ``etcdctl ARGS`` against the lab's members."""
    etcd = plan.get("etcd") or {}
    netns = etcd.get("netns", CONTROL_PLANE_NODE)
    prefix = ["nsenter", f"--net=/var/run/netns/{netns}", "--"] if netns else []
    return etcdctl_command(prefix, endpoints(plan), etcd.get("tls"), args)


def _run_json(plan: dict[str, Any], args: list[str]) -> Any:
    try:
        res = subprocess.run(
            etcdctl_argv(plan, ["--command-timeout=2s", *args, "-w", "json"]),
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (subprocess.TimeoutExpired, FileNotFoundError):
        return None
    try:
        return json.loads(res.stdout) if res.stdout.strip() else None
    except ValueError:
        return None


def member_rows(statuses: Any, healths: Any) -> list[tuple[str, str, str, str]]:
    """(endpoint, health, role, detail) per member, from ``endpoint status`` and ``endpoint health`` JSON."""
    health_of: dict[str, str] = {}
    for h in healths or []:
        ok = bool(h.get("health"))
        health_of[str(h.get("endpoint"))] = "healthy" if ok else f"UNHEALTHY ({h.get('error', 'no answer')})"
    rows = []
    seen: set[str] = set()
    for s in statuses or []:
        ep = str(s.get("Endpoint"))
        st = s.get("Status") or {}
        header = st.get("header") or {}
        member = int(header.get("member_id", 0))
        leader = int(st.get("leader", 0))
        role = "leader" if member and member == leader else "follower"
        detail = (
            f"member {member:x}, raft term {st.get('raftTerm', '?')}, revision {header.get('revision', '?')},"
            f" db {int(st.get('dbSize', 0)) / 1e6:.1f} MB, etcd {st.get('version', '?')}"
        )
        rows.append((ep, health_of.get(ep, "healthy"), role, detail))
        seen.add(ep)
    for ep, h in health_of.items():
        if ep not in seen:
            rows.append((ep, h, "unknown", "no status (member down or unreachable)"))
    return rows


def lease_rows(get: Callable[[str], dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(lease, holder, renewed) of the control-plane Leases; ``get`` is a GET on the API."""
    rows = []
    for name in LEASES:
        try:
            spec = get(f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}").get("spec", {})
        except (OSError, ValueError, errors.ApiError):  # no such Lease yet, or the API is down
            rows.append((name, "(none)", ""))
            continue
        rows.append((name, spec.get("holderIdentity") or "(none)", spec.get("renewTime", "")))
    return rows


def status_lines(plan: dict[str, Any], get: Callable[[str], dict[str, Any]]) -> list[str]:
    """What ``kubelab status`` prints about etcd members and control-plane Leases."""
    lines: list[str] = []
    if plan.get("store") == "etcd":
        rows = member_rows(
            _run_json(plan, ["endpoint", "status", "--cluster=false"]), _run_json(plan, ["endpoint", "health"])
        )
        lines.append("\nETCD MEMBER                 HEALTH     ROLE      DETAIL")
        for ep, h, role, detail in rows or [(",".join(endpoints(plan)), "UNHEALTHY", "unknown", "no answer")]:
            lines.append(f"{ep:<27} {h:<10} {role:<9} {detail}")
    lines.append("\nLEASE (kube-system)       HOLDER                                     RENEWED")
    for name, holder, renewed in lease_rows(get):
        lines.append(f"{name:<25} {holder:<42} {renewed}")
    return lines


def cmd_etcd(args: argparse.Namespace) -> int:
    plan = state.read_plan()
    if plan is None:
        from lab import vagrantlab  # the VM lab (vagrant up): etcdctl against its members

        if vagrantlab.present():
            return vagrantlab.etcd(list(args.etcdctl_args))
        print("kubelab etcd: no lab is up.")
        return 1
    if plan.get("store") != "etcd":
        print(
            f"kubelab etcd: this lab's store is {plan.get('store')}, not etcd; bring one up with "
            "`sudo kubelab up --store etcd` (or look at this one with `kubelab store keys /registry/`)."
        )
        return 1
    if os.geteuid() != 0:
        print("kubelab etcd: needs root (etcd listens inside the control plane's network namespace): use sudo")
        return 1
    argv = etcdctl_argv(plan, list(args.etcdctl_args))
    try:
        return subprocess.run(argv, check=False).returncode
    except FileNotFoundError:
        print("kubelab etcd: etcdctl is not installed (Debian package etcd-client; `make deps` installs it)")
        return 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "etcd",
        help="run etcdctl against the lab's etcd (e.g. `kubelab etcd member list -w table`)",
        description="Runs Debian's etcdctl with the lab's endpoints (and certificates): "
        "`kubelab etcd endpoint status -w table`, `kubelab etcd get /registry/pods --prefix --keys-only`.",
    )
    p.add_argument("etcdctl_args", nargs=argparse.REMAINDER, help="etcdctl's own arguments")
    p.set_defaults(func=cmd_etcd)
