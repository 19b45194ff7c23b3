"""``kubelab proxy``: the service proxy daemon, ``proxy render`` and ``proxy cleanup``.

- ``kubelab proxy --node-name N --kubeconfig K [--backend auto|iptables-restore|python-iptables]
  [--cluster-cidr 10.244.0.0/16] [--min-sync-period 1s] [--sync-period 30s]
  [--metrics-bind 127.0.0.1:10249] [--healthz-bind-address 0.0.0.0:10256]
  [--debug-bind-address 0.0.0.0:10253 --tls-cert-file C --tls-private-key-file K --client-ca-file CA]``
  watches Services,
  EndpointSlices and its Node and keeps the node's iptables in kube-proxy's shape. Run it inside
  the node's network namespace. Instead of ``--kubeconfig``, ``--objects-file F`` reads the
  objects from a file (re-read on change).
- ``kubelab proxy render -f objects.yaml [--node-name --cluster-cidr --node-ip ...]`` prints the
  rules for the objects in the file, in iptables-save form, touching nothing.
- ``kubelab proxy cleanup [--backend ...]`` removes every chain the proxy owns and its hooks in
  the built-in chains (in both iptables variants unless ``--backend`` names one), nothing else.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger("proxy")


def parse_duration(text: str) -> float:
    """``1s``, ``500ms``, ``2m``, ``0`` → seconds."""
    t = text.strip()
    try:
        for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
            if t.endswith(suffix):
                return float(t[: -len(suffix)]) * scale
        return float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 1s, 500ms, 2m)") from None


def _bool(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"not a boolean: {text!r}")


def _rule_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--node-name", default="", help="this node's name (for Local traffic policies)")
    p.add_argument("--cluster-cidr", default="10.244.0.0/16", help="pod network; '' disables the detector")
    p.add_argument("--node-ip", action="append", default=[], help="this node's IP (repeatable)")
    p.add_argument("--masquerade-all", action="store_true", help="SNAT all service traffic")
    p.add_argument(
        "--iptables-localhost-nodeports",
        type=_bool,
        default=True,
        metavar="BOOL",
        help="allow NodePorts on 127.0.0.1 (sets route_localnet=1; default true)",
    )


def _options(args: argparse.Namespace) -> Any:
    import ipaddress

    from proxy.rules import ProxyOptions

    cidr = args.cluster_cidr
    if cidr:
        try:
            cidr = str(ipaddress.IPv4Network(cidr, strict=False))
        except ValueError:
            raise SystemExit(f"kubelab proxy: --cluster-cidr {cidr!r} is not an IPv4 CIDR") from None
    for ip in args.node_ip:
        try:
            ipaddress.IPv4Address(ip)
        except ValueError:
            raise SystemExit(f"kubelab proxy: --node-ip {ip!r} is not an IPv4 address") from None
    return ProxyOptions(
        node_name=args.node_name,
        cluster_cidr=cidr,
        node_ips=tuple(args.node_ip),
        masquerade_all=args.masquerade_all,
        localhost_nodeports=args.iptables_localhost_nodeports,
    )


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("proxy", help="the service proxy (kube-proxy's iptables mode)")
    _rule_flags(p)
    p.add_argument("--kubeconfig", help="kubeconfig of the cluster to watch")
    p.add_argument("--objects-file", type=Path, help="read Services/EndpointSlices from this file instead")
    p.add_argument("--backend", default="auto", choices=("auto", "iptables-restore", "python-iptables"))
    p.add_argument("--min-sync-period", type=parse_duration, default=1.0, metavar="DURATION")
    p.add_argument("--sync-period", type=parse_duration, default=30.0, metavar="DURATION")
    p.add_argument("--metrics-bind", default="127.0.0.1:10249", metavar="ADDR:PORT")
    p.add_argument(
        "--healthz-bind-address",
        default="0.0.0.0:10256",
        metavar="ADDR:PORT",
        help="kube-proxy's healthz server (/healthz, /livez); '' disables it",
    )
    p.add_argument(
        "--debug-bind-address",
        default="0.0.0.0:10253",
        metavar="ADDR:PORT",
        help="HTTPS /debug/rules for kubelab trace, authenticated and authorized by the API server "
        "(needs --tls-cert-file, --tls-private-key-file, --client-ca-file and --kubeconfig); '' disables it",
    )
    p.add_argument("--tls-cert-file", type=Path, help="serving certificate of the debug endpoint (the node's)")
    p.add_argument("--tls-private-key-file", type=Path, help="its key")
    p.add_argument("--client-ca-file", type=Path, help="CA that signs client certificates (the cluster CA)")
    p.set_defaults(func=run_daemon)
    sub = p.add_subparsers(dest="proxy_command", metavar="SUBCOMMAND")
    r = sub.add_parser("render", help="print the rules for objects in a file (touches nothing)")
    _rule_flags(r)
    r.add_argument("-f", "--filename", required=True, help="YAML/JSON file of objects ('-' for stdin)")
    r.set_defaults(func=run_render)
    c = sub.add_parser("cleanup", help="remove every chain and rule the proxy owns")
    c.add_argument("--backend", default="all", choices=("all", "iptables-restore", "python-iptables"))
    c.add_argument("--mode", choices=("nft", "legacy"), help="with --backend iptables-restore: which variant")
    c.set_defaults(func=run_cleanup)


def run_render(args: argparse.Namespace) -> int:
    import yaml

    from proxy.rules import render
    from proxy.sources import load_objects, split_kinds

    try:
        text = sys.stdin.read() if args.filename == "-" else Path(args.filename).read_text()
        objs = load_objects(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        print(f"kubelab proxy render: cannot read {args.filename}: {exc}", file=sys.stderr)
        return 1
    services, slices, nodes = split_kinds(objs)
    node = next((n for n in nodes if (n.get("metadata") or {}).get("name") == args.node_name), None)
    ruleset = render(services, slices, node, _options(args))
    for err in ruleset.errors:
        print(f"# skipped: {err}")
    sys.stdout.write(ruleset.text())
    return 0


def run_cleanup(args: argparse.Namespace) -> int:
    from proxy.backend.interface import BackendError
    from proxy.backend.restore import RestoreBackend

    modes = [args.mode] if args.mode else ["nft", "legacy"]
    if args.backend == "python-iptables":
        modes = ["legacy"]
    failed = False
    for mode in modes:
        try:
            RestoreBackend(mode).cleanup()
            log.info("removed the proxy's chains from the %s tables", mode)
        except (BackendError, OSError) as exc:
            log.error("cleanup of the %s tables failed: %s", mode, exc)
            failed = True
    return 1 if failed else 0


def _route_localnet() -> None:
    # kube-proxy sets this for localhost NodePorts: without it the kernel drops packets to
    # 127.0.0.1 that DNAT sends elsewhere. It is per network namespace (we run in the node's).
    try:
        Path("/proc/sys/net/ipv4/conf/all/route_localnet").write_text("1\n")
    except OSError as exc:
        log.warning("cannot set net.ipv4.conf.all.route_localnet=1 (localhost NodePorts will not work): %s", exc)


def _secure_debug(args: argparse.Namespace, proxier: Any) -> Any:
    """The authenticated ``/debug/rules`` on the node's address, when the flags allow it."""
    if not args.debug_bind_address:
        return None
    if not (args.tls_cert_file and args.tls_private_key_file and args.client_ca_file and args.kubeconfig):
        log.info("no authenticated /debug/rules: it needs --tls-cert-file, --tls-private-key-file, "
                 "--client-ca-file and --kubeconfig")  # fmt: skip
        return None
    from controlplane.client import delegated
    from controlplane.client.rest import ApiClient
    from proxy.server import secure_route

    auth = delegated.DelegatedAuth(delegated.client_poster(ApiClient.from_kubeconfig(args.kubeconfig)))
    ctx = delegated.server_context(args.tls_cert_file, args.tls_private_key_file, args.client_ca_file)
    return delegated.SecureServer(secure_route(proxier), auth, ctx, args.debug_bind_address, "proxy-debug").start()


def run_daemon(args: argparse.Namespace) -> int:
    from proxy.backend.conntrack import Conntrack
    from proxy.backend.detect import make_backend
    from proxy.proxier import Proxier
    from proxy.server import HealthzServer, serve
    from proxy.sources import FileSource, InformerSource

    if not args.node_name:
        print("kubelab proxy: --node-name is required", file=sys.stderr)
        return 2
    if not args.kubeconfig and not args.objects_file:
        print("kubelab proxy: --kubeconfig (or --objects-file) is required", file=sys.stderr)
        return 2
    if args.min_sync_period > args.sync_period or args.sync_period <= 0:
        print("kubelab proxy: need 0 <= --min-sync-period <= --sync-period, --sync-period > 0", file=sys.stderr)
        return 2
    options = _options(args)
    backend, why = make_backend(args.backend)
    log.info("using backend %s", why)
    if options.localhost_nodeports:
        _route_localnet()
    proxier = Proxier(
        backend,
        options,
        min_sync_period=args.min_sync_period,
        sync_period=args.sync_period,
        conntrack=Conntrack(),
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        proxier.runner.wake()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = serve(proxier, args.metrics_bind)
    log.info("serving /debug/rules, /metrics, /healthz on %s:%d", *server.server_address[:2])
    healthz = HealthzServer(proxier, args.healthz_bind_address, stop) if args.healthz_bind_address else None
    secure = _secure_debug(args, proxier)
    source: FileSource | InformerSource
    if args.objects_file:
        source = FileSource(proxier, args.objects_file, args.node_name)
    else:
        source = InformerSource(proxier, args.kubeconfig, args.node_name)
    source.start(stop)

    def canary_monitor() -> None:
        # kube-proxy's iptables.Monitor: a wake-up lets sync() look for the canary on the
        # runner's thread (backends are single-threaded); a flush then forces a full resync.
        while not stop.wait(min(5.0, args.sync_period)):
            proxier.request_canary_check()

    threading.Thread(target=canary_monitor, name="proxy-canary", daemon=True).start()
    try:
        proxier.runner.loop(stop)
    finally:
        if isinstance(source, InformerSource):
            source.stop()
        server.shutdown()
        if secure is not None:
            secure.shutdown()
        if healthz is not None:
            healthz.shutdown()
    return 0
