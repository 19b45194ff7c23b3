"""``kubelab dns``: the cluster DNS server, and the ``kube-system/kube-dns`` Service that points at it.

Role: run ``server.ClusterView`` + ``server.DnsServer`` on ``--listen``, and keep the objects that
make the server reachable at the cluster DNS address (10.96.0.10, what every pod's resolv.conf
names): the selector-less Service ``kube-system/kube-dns`` (ports ``dns`` 53/UDP and ``dns-tcp``
53/TCP, label ``k8s-app=kube-dns``, as kubeadm's), and its Endpoints and EndpointSlice naming this
server's own address — the way the API server keeps ``default/kubernetes`` pointing at itself.
With several servers (an HA control plane) each is given every address (``--advertise-address``
repeated) and publishes the same list, so the writers agree. The
node proxies then DNAT 10.96.0.10:53 to us like any other Service.

Invariants: level-triggered — ``ensure_objects`` creates what is missing and corrects what drifted
(ports, labels, addresses) and is run at start, whenever an informer sees one of these objects
change or vanish, and every ``ENSURE_PERIOD`` seconds; it never changes a Service's clusterIP
(immutable): a kube-dns Service holding another IP is reported, not replaced. The objects are
written only after the sockets are bound, so the endpoint is never published before it answers.

Concurrency: the asyncio loop (main thread) serves DNS; informer threads feed the view and wake the
ensurer thread, which alone writes to the API server.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import threading
from collections.abc import Sequence
from typing import Any

from controlplane.api import errors
from controlplane.api.registry import ENDPOINTS, ENDPOINTSLICES, SERVICES, Resource
from controlplane.client.controller import worker_loop
from controlplane.client.kubeconfig import KubeconfigError
from controlplane.client.rest import ApiClient
from controlplane.client.workqueue import WorkQueue
from controlplane.dns import resolver
from controlplane.dns.server import ClusterView, DnsServer

log = logging.getLogger(__name__)

Obj = dict[str, Any]
NAMESPACE = "kube-system"
NAME = "kube-dns"
MANAGER = "kubelab-dns"
DEFAULT_SERVICE_IP = "10.96.0.10"
DEFAULT_REVERSE_CIDRS = ("10.96.0.0/12", "10.244.0.0/16")
ENSURE_PERIOD = 10.0


def parse_listen(value: str) -> tuple[str, int]:
    """``ADDR:PORT`` (or ``[v6]:PORT``) → (addr, port); a clear error for anything else."""
    host, sep, port_s = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise argparse.ArgumentTypeError(f"--listen wants ADDR:PORT (e.g. 192.168.56.10:53), not {value!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--listen: {host!r} is not an IP address") from None
    return host, int(port_s)


def desired_service(service_ip: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "KubeDNS", "kubernetes.io/cluster-service": "true"},
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": service_ip,
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
            "sessionAffinity": "None",
        },
    }


def _addresses(address: str | Sequence[str]) -> list[str]:
    return [address] if isinstance(address, str) else list(address)


def desired_endpoint_slice(address: str | Sequence[str], port: int) -> Obj:
    addrs = _addresses(address)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": {
                resolver.SERVICE_NAME_LABEL: NAME,
                "endpointslice.kubernetes.io/managed-by": MANAGER,
                "k8s-app": "kube-dns",
            },
        },
        "addressType": "IPv6" if ":" in addrs[0] else "IPv4",
        "endpoints": [
            {"addresses": [a], "conditions": {"ready": True, "serving": True, "terminating": False}} for a in addrs
        ],
        "ports": [
            {"name": "dns", "port": port, "protocol": "UDP"},
            {"name": "dns-tcp", "port": port, "protocol": "TCP"},
        ],
    }


def desired_endpoints(address: str | Sequence[str], port: int) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            # we publish the slice ourselves: a mirroring controller must not make a second one
            "labels": {"endpointslice.kubernetes.io/skip-mirror": "true", "k8s-app": "kube-dns"},
        },
        "subsets": [
            {
                "addresses": [{"ip": a} for a in _addresses(address)],
                "ports": [
                    {"name": "dns", "port": port, "protocol": "UDP"},
                    {"name": "dns-tcp", "port": port, "protocol": "TCP"},
                ],
            }
        ],
    }


def _ensure(client: ApiClient, res: Resource, want: Obj, fields: tuple[str, ...]) -> str:
    """Create ``want`` or bring ``fields`` (and its labels) up to date. Returns what it did."""
    name = want["metadata"]["name"]
    try:
        have = client.get(res, name, NAMESPACE)
    except errors.NotFound:
        try:
            client.create(res, want, NAMESPACE)
            return "created"
        except errors.AlreadyExists:
            return "raced"
    labels = dict((have.get("metadata") or {}).get("labels") or {})
    drift = [f for f in fields if have.get(f) != want[f]]
    missing_labels = {k: v for k, v in want["metadata"]["labels"].items() if labels.get(k) != v}
    if not drift and not missing_labels:
        return "ok"
    for f in drift:
        have[f] = want[f]
    have.setdefault("metadata", {})["labels"] = {**labels, **missing_labels}
    client.update(res, have)
    return "updated"


def ensure_service(client: ApiClient, service_ip: str) -> str:
    want = desired_service(service_ip)
    try:
        have = client.get(SERVICES, NAME, NAMESPACE)
    except errors.NotFound:
        try:
            client.create(SERVICES, want, NAMESPACE)
            return "created"
        except errors.AlreadyExists:
            return "raced"
    spec = have.get("spec") or {}
    if spec.get("clusterIP") != service_ip:
        log.error(
            "Service %s/%s has clusterIP %s, not %s (clusterIP cannot change): pods' resolv.conf names %s;"
            " delete the Service and it is recreated",
            NAMESPACE, NAME, spec.get("clusterIP"), service_ip, service_ip,
        )  # fmt: skip
        return "conflict"
    labels = dict((have.get("metadata") or {}).get("labels") or {})
    want_labels = want["metadata"]["labels"]
    if spec.get("ports") and [(p.get("name"), p.get("port"), p.get("protocol")) for p in spec["ports"]] == [
        (p["name"], p["port"], p["protocol"]) for p in want["spec"]["ports"]
    ] and all(labels.get(k) == v for k, v in want_labels.items()) and not spec.get("selector"):  # fmt: skip
        return "ok"
    spec["ports"] = want["spec"]["ports"]
    spec.pop("selector", None)  # a selector would hand our endpoints to the endpointslice controller
    have["spec"] = spec
    have.setdefault("metadata", {})["labels"] = {**labels, **want_labels}
    client.update(SERVICES, have)
    return "updated"


def ensure_objects(client: ApiClient, service_ip: str, address: str | Sequence[str], port: int) -> dict[str, str]:
    """Service, Endpoints and EndpointSlice as they should be; what was done to each."""
    return {
        "service": ensure_service(client, service_ip),
        "endpoints": _ensure(client, ENDPOINTS, desired_endpoints(address, port), ("subsets",)),
        "endpointslice": _ensure(
            client, ENDPOINTSLICES, desired_endpoint_slice(address, port), ("addressType", "endpoints", "ports")
        ),
    }


class Ensurer:
    """Runs ``ensure_objects`` at start, when poked (an informer saw our objects change) and periodically.

    One key on a work queue, synced by the client's ``worker_loop``: the sync returns when to
    ensure again (``ENSURE_PERIOD``, or its own back-off, 0.2 s doubling to 5 s, while it fails).
    """

    def __init__(self, client: ApiClient, service_ip: str, address: str | Sequence[str], port: int) -> None:
        self.client, self.service_ip, self.address, self.port = client, service_ip, address, port
        self.queue: WorkQueue[str] = WorkQueue("dns-ensure")
        self._backoff = 0.2
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dns-ensure", daemon=True)

    def poke_if_ours(self, obj: Obj) -> None:
        meta = obj.get("metadata") or {}
        if meta.get("namespace") == NAMESPACE and meta.get("name") == NAME:
            self.queue.add(NAME)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        self.queue.add(NAME)
        worker_loop(self.queue, self._ensure, self._stop)

    def _ensure(self, _key: str) -> float:
        try:
            done = ensure_objects(self.client, self.service_ip, self.address, self.port)
        except Exception as e:  # API server not up yet, a conflict, a transport error: retry soon
            backoff = self._backoff
            log.info("ensuring %s/%s: %s (retrying in %.1fs)", NAMESPACE, NAME, e, backoff)
            self._backoff = min(backoff * 2, 5.0)
            return backoff
        self._backoff = 0.2
        changed = {k: v for k, v in done.items() if v not in ("ok",)}
        if changed:
            log.info("%s/%s: %s", NAMESPACE, NAME, ", ".join(f"{k} {v}" for k, v in changed.items()))
        return ENSURE_PERIOD

    def stop(self) -> None:
        self._stop.set()
        self.queue.shutdown()
        self._thread.join(timeout=5)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", required=True, help="kubeconfig with the API server and credentials")
    p.add_argument(
        "--listen", required=True, type=parse_listen, metavar="ADDR:PORT", help="where to answer (UDP and TCP)"
    )
    p.add_argument(
        "--advertise-address",
        action="append",
        default=None,
        help="an address published in kube-dns's endpoints (default: the --listen address); repeatable: with "
        "several DNS servers (an HA control plane) each one publishes the same list, so they agree",
    )
    p.add_argument("--cluster-domain", default=resolver.DEFAULT_ZONE)
    p.add_argument("--service-ip", default=DEFAULT_SERVICE_IP, help="kube-dns's clusterIP (pods' nameserver)")
    p.add_argument(
        "--reverse-cidr",
        action="append",
        default=None,
        metavar="CIDR",
        help="answer reverse (PTR) names inside this network, NXDOMAIN when unknown (repeatable; "
        f"default {', '.join(DEFAULT_REVERSE_CIDRS)}); other reverse names are REFUSED",
    )
    p.add_argument(
        "--no-service",
        dest="ensure_service",
        action="store_false",
        help="only answer; do not create/maintain the kube-dns Service and its endpoints",
    )


def run(args: argparse.Namespace) -> int:
    host, port = args.listen
    advertise: list[str] = args.advertise_address or [host]
    try:
        wildcard = any(ipaddress.ip_address(a).is_unspecified for a in advertise)
        ipaddress.ip_address(args.service_ip)
        cidrs = [str(ipaddress.ip_network(c, strict=False)) for c in (args.reverse_cidr or DEFAULT_REVERSE_CIDRS)]
    except ValueError as e:
        log.error("%s", e)
        return 2
    if args.ensure_service and wildcard:
        log.error("--listen %s is a wildcard: give --advertise-address, the address pods should reach", host)
        return 2
    try:
        client = ApiClient.from_kubeconfig(args.kubeconfig, user_agent="kubelab-dns")
    except (KubeconfigError, OSError) as e:
        log.error("%s", e)
        return 2
    view = ClusterView(client, zone=args.cluster_domain, dns_service_ip=args.service_ip, reverse_cidrs=cidrs)
    try:
        return asyncio.run(_serve(args, client, view, host, port, advertise))
    finally:
        view.stop()
        client.close()


async def _serve(
    args: argparse.Namespace, client: ApiClient, view: ClusterView, host: str, port: int, advertise: list[str]
) -> int:
    server = DnsServer(lambda: view.view, host, port)
    try:
        await server.start()
    except OSError as e:
        log.error("cannot listen on %s:%d: %s", host, port, e)
        return 1
    print(f"kubelab dns: serving {args.cluster_domain} on {host}:{server.port} (UDP and TCP)", flush=True)
    ensurer: Ensurer | None = None
    if args.ensure_service:
        ensurer = Ensurer(client, args.service_ip, advertise, server.port)
        view.on_change(ensurer.poke_if_ours)
    view.start()
    if ensurer is not None:
        ensurer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping")
    if ensurer is not None:
        ensurer.stop()
    await server.close()
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("dns", help="run the cluster DNS server (cluster.local) and keep kube-dns pointing at it")
    add_arguments(p)
    p.set_defaults(func=run)
