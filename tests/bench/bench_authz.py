"""Authorization cost: pod create throughput at 64 clients with ``Node,RBAC`` beside ``AlwaysAllow``.

Issue 16's goal: with authorization on, create throughput at 64 clients is at least 0.9× what it
is with it off, in the same run. Two real ``kubelab apiserver`` subprocesses (sqlite) are started
side by side, one with ``--authorization-mode=AlwaysAllow`` (the anchor) and one with the default
``Node,RBAC``; only one is loaded at a time, and after a warm-up the runs alternate (off, on/admin,
on/editor, rotated each round) for ``--reps`` rounds so drift on the shared machine hits all rows
alike. With authorization on, two callers are measured: the admin (``system:masters``, allowed
before any binding is looked at, as kube-apiserver's privileged-group authorizer does) and an
``editor`` user allowed through a RoleBinding to ``edit`` in the namespace, with 200 unrelated
RoleBindings in the cluster so the per-subject index has something to skip. Every create also
passes the NodeRestriction and escalation admission steps.

The load is ``bench_apiserver``'s closed loop (persistent TLS connections, pre-built requests).
Figures are medians of the rounds with the min–max spread; the ratio is ours/anchor. Throughput on
a machine shared with other work swings by ±25 % between identical runs, so the server's CPU time
per create (user + system, from /proc) is printed too: it is what authorization actually adds.

Run: ``python -m tests.bench.bench_authz [--scale 0.5] [--reps 3]``.
"""

from __future__ import annotations

import argparse
import copy
import shutil
import statistics
import tempfile
from pathlib import Path

from controlplane import pki
from tests.bench.bench_apiserver import create_pods, ensure_namespace, run_loop
from tests.bench.stats import fmt_ratio, print_table
from tests.helpers.apiserver import RunningApiServer, start_apiserver

CLIENTS = 64
OPS = 6400
NAMESPACE = "bench-authz"


def as_user(srv: RunningApiServer, tmp: Path, cn: str) -> RunningApiServer:
    """The same server, seen with a client certificate for ``cn`` (issued by the cluster CA)."""
    ca = pki.CertificateAuthority(srv.ca_file.read_bytes(), (srv.data_dir / "pki" / "ca.key").read_bytes())
    cert, key = pki.issue_cert(ca, cn)
    view = copy.copy(srv)
    view.cert_file, view.key_file = tmp / f"{cn}.crt", tmp / f"{cn}.key"
    view.cert_file.write_bytes(cert)
    view.key_file.write_bytes(key)
    return view


def grant_edit(srv: RunningApiServer, user: str) -> None:
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    with srv.http() as c:
        for i in range(200):  # unrelated bindings: the index must skip them
            body = {
                "metadata": {"name": f"other-{i}"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
                "subjects": [{"kind": "User", "name": f"someone-{i}"}, {"kind": "Group", "name": f"team-{i}"}],
            }
            c.post(f"{rbac}/namespaces/{NAMESPACE}/rolebindings", json=body)
        body = {
            "metadata": {"name": "editor"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "User", "name": user}],
        }
        r = c.post(f"{rbac}/namespaces/{NAMESPACE}/rolebindings", json=body)
        assert r.status_code in (201, 409), r.text


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the 6,400 creates per run")
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    total = max(CLIENTS, int(OPS * args.scale))
    tmp = Path(tempfile.mkdtemp(prefix="bench-authz-"))
    off = start_apiserver(tmp / "off", store="sqlite", extra_args=["--authorization-mode", "AlwaysAllow"])
    on = start_apiserver(tmp / "on", store="sqlite")
    try:
        for srv in (off, on):
            run_loop(ensure_namespace(srv, NAMESPACE))
        grant_edit(on, "editor")
        editor = as_user(on, tmp, "editor")
        runs: dict[str, list[float]] = {"off": [], "admin": [], "editor": []}
        cpu: dict[str, list[float]] = {"off": [], "admin": [], "editor": []}
        targets = {"off": off, "admin": on, "editor": editor}
        for label, srv in targets.items():  # warm-up (first connections, caches), not counted
            run_loop(create_pods(srv, CLIENTS, CLIENTS * 10, NAMESPACE, f"warm-{label}"))
        order = list(targets)
        for rep in range(args.reps):
            for label in order[rep % 3 :] + order[: rep % 3]:  # rotate: no row always runs first
                load = run_loop(create_pods(targets[label], CLIENTS, total, NAMESPACE, f"{label}{rep}"))
                runs[label].append(load.ops / load.elapsed)
                cpu[label].append(load.server_cpu / load.ops)
        with on.http() as c:  # the editor really was refused elsewhere: authorization was on
            assert c.get("/api/v1/pods", headers={"Impersonate-User": "editor"}).status_code == 403
        base = statistics.median(runs["off"])
        base_cpu = statistics.median(cpu["off"])
        rows = []
        for label, title in (
            ("off", "AlwaysAllow (anchor)"),
            ("admin", "Node,RBAC — admin (system:masters)"),
            ("editor", "Node,RBAC — user with edit RoleBinding (+200 others)"),
        ):
            xs = runs[label]
            med = statistics.median(xs)
            c = statistics.median(cpu[label])
            rows.append(
                [
                    title,
                    f"{med:,.0f}/s",
                    f"{min(xs):,.0f}–{max(xs):,.0f}",
                    fmt_ratio(med, base),
                    f"{c * 1e6:,.0f} µs",
                    fmt_ratio(c, base_cpu),
                ]
            )
        print_table(
            f"Pod creates at {CLIENTS} clients, sqlite, {total} per run, median of {args.reps}",
            ["authorization", "creates/s", "spread", "vs off", "server CPU/create", "CPU vs off"],
            rows,
        )
    finally:
        off.stop()
        on.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
