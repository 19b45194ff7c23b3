"""``kubelab noded`` (run the node agent), ``kubelab noded cleanup`` and ``kubelab image import``.

Run noded inside a node's network namespace with ``nsenter --net=/var/run/netns/<node>`` (not
``ip netns exec``: that gives the process a private mount namespace, so overlay mounts and pod
netns bind mounts would vanish with it and a restarted noded could not find them).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_ROOT = "/var/lib/kubelab/noded"


def _paths(values: list[str] | None, default: str) -> list[Path]:
    out: list[Path] = []
    for v in values or [default]:
        out.extend(Path(p) for p in v.split(":") if p)
    return out


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("noded", help="run the node agent (kubelet) or clean up after it")
    p.add_argument("action", nargs="?", choices=["run", "cleanup"], default="run")
    p.add_argument("--node-name")
    p.add_argument("--kubeconfig")
    p.add_argument("--node-ip")
    p.add_argument("--root-dir", default=DEFAULT_ROOT)
    p.add_argument("--log-root", default="/var/log/pods", help="where container logs go (CRI layout)")
    p.add_argument("--cni-bin-dir", action="append", help="CNI plugin dirs (repeat or ':'-separate)")
    p.add_argument("--cni-conf-dir", default="/etc/cni/net.d")
    p.add_argument("--cni", choices=["kubelab", "reference"], default="kubelab")
    p.add_argument(
        "--node-netns",
        default="",
        help="the node's network namespace when noded runs outside it (tests): CNI plugins run and "
        "probes connect there",
    )
    p.add_argument("--netns-prefix", default="", help="prefix for pod netns names (tests)")
    p.add_argument("--manifests-dir")
    p.add_argument("--tls-cert-file")
    p.add_argument("--tls-private-key-file")
    p.add_argument("--client-ca-file")
    p.add_argument("--kubelet-port", type=int, default=10250)
    p.add_argument("--insecure-registry", action="append", default=[])
    p.add_argument(
        "--registry-config-path",
        default="",
        help="registry hosts directory in containerd's model (<dir>/<registry>/hosts.toml: mirrors tried "
        "in order, then the upstream server); empty: every registry is asked directly",
    )
    p.add_argument("--pause-image", default="", help="pause image (default: the built-in pause)")
    p.add_argument("--backoff-base", type=float, default=10.0, help="crash-loop back-off base (s)")
    p.add_argument("--workers", type=int, default=8)
    p.add_argument(
        "--image-gc-high-bytes",
        type=int,
        default=10 * 2**30,
        help="image store size above which unused images are removed (least recently used first) to 80%%",
    )
    p.add_argument("--cluster-dns", default="10.96.0.10")
    p.add_argument("--lease-period", type=float, default=10.0)
    p.add_argument("--status-period", type=float, default=10.0)
    p.set_defaults(func=main)

    img = subparsers.add_parser("image", help="manage noded's image store")
    isub = img.add_subparsers(dest="image_command", metavar="COMMAND")
    imp = isub.add_parser("import", help="load an OCI archive into the store without a registry")
    imp.add_argument("archive")
    imp.add_argument("--name", help="image reference to store it as (default: from the archive)")
    imp.add_argument("--root-dir", default=DEFAULT_ROOT)
    imp.set_defaults(func=image_import)
    ls = isub.add_parser("list", help="list stored images")
    ls.add_argument("--root-dir", default=DEFAULT_ROOT)
    ls.set_defaults(func=image_list)
    img.set_defaults(func=lambda a: (img.print_help(), 2)[1])


def image_import(args: argparse.Namespace) -> int:
    from noded.images.store import ImageError, ImageStore

    store = ImageStore(Path(args.root_dir) / "images")
    try:
        image = store.import_archive(args.archive, args.name)
    except ImageError as exc:
        log.error("%s", exc)
        return 1
    print(f"imported {image.ref} ({image.image_id})")
    return 0


def image_list(args: argparse.Namespace) -> int:
    from noded.images.store import ImageStore

    for image in ImageStore(Path(args.root_dir) / "images").list_images():
        print(f"{image.ref}\t{image.image_id[:19]}\t{image.size}")
    return 0


def main(args: argparse.Namespace) -> int:
    if args.action == "cleanup":
        return cleanup(
            Path(args.root_dir),
            Path(args.log_root),
            _paths(args.cni_bin_dir, "/usr/lib/cni"),
            Path(args.cni_conf_dir),
            args.node_netns,
        )
    missing = [f for f in ("node_name", "kubeconfig", "node_ip") if not getattr(args, f)]
    if missing:
        log.error("missing required flags: %s", ", ".join("--" + m.replace("_", "-") for m in missing))
        return 2
    from controlplane.client.rest import ApiClient
    from noded.agent import Noded, NodedConfig
    from noded.images.store import ImageStore
    from noded.runtime.runc import RuncRuntime

    root = Path(args.root_dir)
    cfg = NodedConfig(
        node_name=args.node_name,
        node_ip=args.node_ip,
        root_dir=root,
        cni_conf_dir=Path(args.cni_conf_dir),
        cni_bin_dirs=_paths(args.cni_bin_dir, "/usr/lib/cni"),
        cni=args.cni,
        manifests_dir=Path(args.manifests_dir) if args.manifests_dir else None,
        log_root=Path(args.log_root),
        netns_prefix=args.netns_prefix,
        cni_exec_prefix=["nsenter", f"--net=/var/run/netns/{args.node_netns}"] if args.node_netns else [],
        node_netns_path=f"/var/run/netns/{args.node_netns}" if args.node_netns else "",
        insecure_registries=args.insecure_registry,
        kubelet_port=args.kubelet_port,
        tls_cert=Path(args.tls_cert_file) if args.tls_cert_file else None,
        tls_key=Path(args.tls_private_key_file) if args.tls_private_key_file else None,
        client_ca=Path(args.client_ca_file) if args.client_ca_file else None,
        workers=args.workers,
        backoff_base=args.backoff_base,
        cluster_dns=args.cluster_dns,
        pause_image=args.pause_image,
        lease_period=args.lease_period,
        image_gc_high_bytes=args.image_gc_high_bytes,
        status_period=args.status_period,
    )
    try:
        client = ApiClient.from_kubeconfig(args.kubeconfig)
    except (OSError, ValueError) as exc:
        log.error("cannot use kubeconfig %s: %s", args.kubeconfig, exc)
        return 2
    runtime = RuncRuntime(root)
    images = ImageStore(
        root / "images",
        insecure_registries=args.insecure_registry,
        registry_config_path=args.registry_config_path or None,
    )
    noded = Noded(cfg, client, runtime, images)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    log.info("noded %s starting (node IP %s, root %s)", cfg.node_name, cfg.node_ip, root)
    noded.run(stop)
    client.close()
    return 0


def cleanup(root: Path, log_root: Path, cni_bins: list[Path], cni_conf_dir: Path, cni_netns: str = "") -> int:
    """Remove every container, netns, mount and file noded made under ``root`` — nothing else.

    Order: for each sandbox, CNI DEL (releases its IP and veth, using the cached result), then all
    containers and sandboxes (runc, overlay mounts, cgroups), then the pod netns, the pod log dirs
    and finally the root dir."""
    from noded.network.cni import CniError, CniInvoker, CniRuntimeConf
    from noded.network.netns import NetnsManager
    from noded.podworker import NETNS_LABEL
    from noded.runtime.runc import RuncRuntime

    if not (root / "containers").is_dir() and not root.exists():
        print(f"nothing to clean: {root} does not exist")
        return 0
    runtime = RuncRuntime(root)
    prefix = ["nsenter", f"--net=/var/run/netns/{cni_netns}"] if cni_netns else []
    cni = CniInvoker(cni_conf_dir, cni_bins, root / "cni-cache", exec_prefix=prefix)
    netns = NetnsManager()
    sandboxes = runtime.list_pod_sandboxes()
    for sb in sandboxes:
        ns_name = sb.labels.get(NETNS_LABEL) or Path(sb.netns_path).name
        with contextlib.suppress(CniError, OSError):
            cni.delete(CniRuntimeConf(sb.id, sb.netns_path if netns.exists(ns_name) else ""))
    removed = runtime.remove_everything()
    for sb in sandboxes:
        netns.delete(sb.labels.get(NETNS_LABEL) or Path(sb.netns_path).name)
        shutil.rmtree(log_root / f"{sb.namespace}_{sb.name}_{sb.uid}", ignore_errors=True)
    # CNI cache entries of sandboxes whose records were already gone.
    for entry in (root / "cni-cache").glob("*") if (root / "cni-cache").is_dir() else []:
        with contextlib.suppress(OSError, ValueError, CniError):
            data = json.loads(entry.read_text())
            cni.delete(CniRuntimeConf(data["containerId"], "", data.get("ifName", "eth0")))
    shutil.rmtree(root, ignore_errors=True)
    print(f"removed {len(removed)} containers/sandboxes and {root}")
    return 0
