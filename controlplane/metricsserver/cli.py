"""``kubelab metrics-server``: flags → PKI paths, informers, scraper thread, HTTPS server.

With ``--register-apiservice ADDR`` it first makes itself reachable through the aggregation
layer (what metrics-server's manifests create): the selector-less Service ``kube-system/metrics-server``
(port 443 → its secure port), its Endpoints at ``ADDR`` and the APIService
``v1beta1.metrics.k8s.io`` pointing there with the cluster CA as ``caBundle``. The lab and the
Vagrant unit pass it; each object is created if missing and left alone otherwise.
"""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path
from typing import Any

from controlplane.metricsserver.server import DEFAULT_RESOLUTION

log = logging.getLogger(__name__)

SERVICE = ("kube-system", "metrics-server")


def registration_objects(address: str, port: int, ca_pem: bytes) -> list[tuple[str, dict[str, Any]]]:
    """(collection path, object) for the Service, its Endpoints and the APIService."""
    import base64

    ns, name = SERVICE
    meta = {"name": name, "namespace": ns, "labels": {"k8s-app": "metrics-server"}}
    return [
        (
            f"/api/v1/namespaces/{ns}/services",
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": meta,
                "spec": {"ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]},
            },
        ),
        (
            f"/api/v1/namespaces/{ns}/endpoints",
            {
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": meta,
                "subsets": [
                    {"addresses": [{"ip": address}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}
                ],
            },
        ),
        (
            "/apis/apiregistration.k8s.io/v1/apiservices",
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": "v1beta1.metrics.k8s.io", "labels": {"k8s-app": "metrics-server"}},
                "spec": {
                    "group": "metrics.k8s.io",
                    "version": "v1beta1",
                    "service": {"namespace": ns, "name": name, "port": 443},
                    "caBundle": base64.b64encode(ca_pem).decode(),
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                },
            },
        ),
    ]


def register_apiservice(client: Any, address: str, port: int, ca_pem: bytes, timeout: float = 300.0) -> None:
    """Create the three objects (those that exist are left alone); retry while the API server starts."""
    import time

    import httpx

    from controlplane.api import errors

    deadline = time.monotonic() + timeout
    for path, obj in registration_objects(address, port, ca_pem):
        while True:
            try:
                client.request("POST", path, body=obj)
                log.info("created %s %s", obj["kind"], obj["metadata"]["name"])
                break
            except errors.AlreadyExists:
                break
            except (httpx.HTTPError, OSError, errors.ServiceUnavailable) as e:
                if time.monotonic() > deadline:
                    raise
                log.info("waiting for the API server to register %s: %s", obj["kind"], e)
                time.sleep(1.0)


def aggregator_pki(data: Path, apiserver_url: str) -> Any:
    """The files of ``pki.ensure_aggregator_pki``, made by it only when one is missing: the PKI module
    pulls in ``cryptography`` (~11 MB of RSS) that a running metrics server otherwise never needs."""
    from types import SimpleNamespace

    p = data / "pki"
    a = SimpleNamespace(
        front_proxy_ca_cert=p / "front-proxy-ca.crt",
        metrics_server_cert=p / "metrics-server.crt",
        metrics_server_key=p / "metrics-server.key",
        metrics_client_cert=p / "metrics-server-client.crt",
        metrics_client_key=p / "metrics-server-client.key",
        metrics_kubeconfig=data / "metrics-server.kubeconfig",
    )
    if all(Path(f).exists() for f in vars(a).values()):
        return a
    from controlplane import pki

    return pki.ensure_aggregator_pki(data, apiserver_url)


def run(args: argparse.Namespace) -> int:
    from controlplane.api import registry
    from controlplane.client.delegated import client_poster
    from controlplane.client.informer import Informer
    from controlplane.client.rest import ApiClient
    from controlplane.metricsserver.scraper import Scraper, https_fetcher
    from controlplane.metricsserver.server import MetricsAPI, SarAuthorizer, client_context, serve_https
    from controlplane.metricsserver.storage import MetricsStore

    data: Path = args.data_dir
    a = aggregator_pki(data, args.apiserver_url)
    client = ApiClient.from_kubeconfig(str(args.kubeconfig or a.metrics_kubeconfig))
    ca = data / "pki" / "ca.crt"
    if args.register_apiservice:
        register_apiservice(client, args.register_apiservice, args.secure_port, ca.read_bytes())
    nodes = Informer(client, registry.NODES, name="nodes")
    pods = Informer(client, registry.PODS, name="pods")
    nodes.start()
    pods.start()
    store = MetricsStore()
    api = MetricsAPI(store, nodes.list, pods.list)

    httpd = serve_https(
        api,
        SarAuthorizer(client_poster(client)),
        cert=a.metrics_server_cert,
        key=a.metrics_server_key,
        client_ca=ca,
        requestheader_ca=a.front_proxy_ca_cert,
        allowed_names=tuple(args.requestheader_allowed_names.split(",")) if args.requestheader_allowed_names else (),
        host=args.bind_address,
        port=args.secure_port,
    )
    ctx = client_context(ca, a.metrics_client_cert, a.metrics_client_key, verify=not args.kubelet_insecure_tls)
    scraper = Scraper(store, nodes.list, https_fetcher(ctx), args.metric_resolution)
    stop = threading.Event()
    threading.Thread(target=scraper.run, args=(stop,), name="scraper", daemon=True).start()
    log.info(
        "metrics server on https://%s:%d, scraping every %.0f s",
        args.bind_address,
        args.secure_port,
        args.metric_resolution,
    )
    try:
        httpd.serve_forever()
    finally:
        stop.set()
        nodes.stop()
        pods.stop()
    return 0


def _duration(text: str) -> float:
    t = text.strip()
    if t.endswith("ms"):
        return float(t[:-2]) / 1000
    if t.endswith("s"):
        return float(t[:-1])
    if t.endswith("m"):
        return float(t[:-1]) * 60
    return float(t)


def add_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, default=Path("/var/lib/kubelab"), help="where the cluster's pki/ is")
    p.add_argument("--kubeconfig", default="", help="default: DATA_DIR/metrics-server.kubeconfig")
    p.add_argument("--apiserver-url", default="https://192.168.56.10:6443", help="written into that kubeconfig")
    p.add_argument("--bind-address", default="0.0.0.0")
    p.add_argument("--secure-port", type=int, default=4443)
    p.add_argument(
        "--metric-resolution",
        type=_duration,
        default=DEFAULT_RESOLUTION,
        help="how often to scrape the kubelets (lab: 5s; Kubernetes' metrics-server: 60s, at least 15s advised)",
    )
    p.add_argument("--kubelet-insecure-tls", action="store_true", help="do not verify kubelets' serving certificates")
    p.add_argument("--requestheader-allowed-names", default="front-proxy-client")
    p.add_argument("--register-apiservice", default="", metavar="ADDR", help="create the Service/Endpoints/APIService")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("metrics-server", help="serve metrics.k8s.io (kubectl top) from the kubelets' stats")
    add_flags(p)
    p.set_defaults(func=run)
