"""``kubelab dashboard``: run the dashboard (``kubelab up`` starts it; this is what it runs).

Imports FastAPI, uvicorn and the client only when the command runs, so ``kubelab --help`` stays
fast. Listens on one address (the lab's host side, 192.168.56.1, by default), HTTPS when given a
serving certificate.
"""

from __future__ import annotations

import argparse
import logging
import sys

log = logging.getLogger(__name__)


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT, e.g. 192.168.56.1:8443")
    if host in ("0.0.0.0", "::", "[::]"):
        raise ValueError(f"--listen {text!r}: the dashboard listens on one address (the lab's host side), not all")
    return host, int(port)


def cmd_dashboard(args: argparse.Namespace) -> int:
    try:
        host, port = parse_listen(args.listen)
        with open(args.token_file) as f:
            token = f.read().strip()
        if len(token) < 16:
            raise ValueError(f"{args.token_file}: the token must be at least 16 characters")
    except (OSError, ValueError) as exc:
        print(f"kubelab dashboard: {exc}", file=sys.stderr)
        return 1
    import uvicorn

    from controlplane.client.rest import ApiClient
    from lab import state, topology
    from lab.dashboard import hub, inspect, server
    from lab.trace import TraceError

    client = ApiClient.from_kubeconfig(args.kubeconfig, user_agent="kubelab-dashboard")
    plan = state.read_plan()
    lab = topology.plan_lab(len(plan["workers"])) if plan else None
    inspector = None
    try:
        inspector = inspect.LabInspector(client)
    except TraceError as exc:  # not in a running lab as root: no machine view
        log.warning("no trace/netns view: %s", exc)
    h = hub.Hub(client, lab=lab, veth_of=inspector.veth_of if inspector else None)
    h.start()
    app = server.create_app(h, token, inspector)
    tls = {"ssl_certfile": args.tls_cert_file, "ssl_keyfile": args.tls_private_key_file} if args.tls_cert_file else {}
    log.info("dashboard on %s://%s:%d", "https" if tls else "http", host, port)
    try:
        # slim: the asyncio loop and h11 (no uvloop, httptools or websockets loaded: the page needs
        # none of them, and each costs resident memory in a lab that must fit in 650 MB)
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, loop="asyncio", http="h11",
                    ws="none", lifespan="off", **tls)  # type: ignore[arg-type]
    finally:
        h.stop()
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("dashboard", help="the read-only web dashboard with the live topology picture")
    p.add_argument("--kubeconfig", required=True, help="the dashboard's own (read-only use) kubeconfig")
    p.add_argument("--token-file", required=True, help="file holding the bearer token the page needs")
    p.add_argument("--listen", default="192.168.56.1:8443", help="HOST:PORT (default 192.168.56.1:8443)")
    p.add_argument("--tls-cert-file", default="", help="serving certificate (HTTPS); plain HTTP without")
    p.add_argument("--tls-private-key-file", default="", help="its key")
    p.set_defaults(func=cmd_dashboard)


def cmd_topology(args: argparse.Namespace) -> int:
    """``kubelab topology --svg FILE | --png FILE``: the dashboard's picture, drawn once."""
    from controlplane.api import registry
    from controlplane.api.errors import ApiError
    from controlplane.client.rest import ApiClient
    from lab import state, topology
    from lab.dashboard import graph, inspect
    from lab.trace import TraceError

    plan = state.read_plan()
    if plan is None:
        print("kubelab topology: no lab is up: start one with `sudo kubelab up`", file=sys.stderr)
        return 1
    try:
        client = ApiClient.from_kubeconfig(args.kubeconfig or state.ADMIN_KUBECONFIG, user_agent="kubelab-topology")
        pods = client.list(registry.PODS)["items"]
        veths: dict[str, str] = {}
        try:
            lab_view = inspect.LabInspector(client)
            veths = {graph.key(p): v for p in pods if (v := lab_view.veth_of(p))}
        except TraceError as exc:  # not root: the picture without veth names
            print(f"kubelab topology: without veth names ({exc})", file=sys.stderr)
        snap = graph.Snapshot(
            client.list(registry.NODES)["items"], pods, client.list(registry.SERVICES)["items"],
            client.list(registry.ENDPOINTSLICES)["items"], veths, topology.plan_lab(len(plan["workers"])),
        )  # fmt: skip
        dot_text = graph.to_dot(graph.build(snap))
        for fmt, path in (("svg", args.svg), ("png", args.png)):
            if path:
                data = graph.render(dot_text, fmt)
                with open(path, "wb") as f:
                    f.write(data)
                print(f"wrote {path} ({len(data)} bytes)")
    except (graph.GraphError, OSError, ValueError, ApiError) as exc:
        print(f"kubelab topology: {exc}", file=sys.stderr)
        return 1
    return 0
