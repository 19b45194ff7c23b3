"""``kubelab apiserver``: run the API server alone (``kubelab controlplane``, in ``controlplane.cli``,
builds on ``build`` and ``make_server`` here to add the scheduler and controller-manager).

Role: flags → PKI (``controlplane.pki.ensure_cluster_pki``) → store → ``create_app`` → uvicorn with
TLS. Client certificates are verified by the TLS layer against the cluster CA (optional, so
token-only clients still connect); the protocol subclasses below record each connection's verified
subject for ``auth.PeerIdentities``, because uvicorn does not put it into the ASGI scope.

Concurrency: one event loop (uvloop) serves everything; the store runs on the app's thread pool;
``make_server``'s ``on_shutdown`` lets a composing command stop its own threads first.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import ssl
from pathlib import Path
from typing import Any

from controlplane import pki as pkimod
from controlplane.api import limits
from controlplane.apiserver.auth import PeerIdentities
from controlplane.apiserver.options import ServerOptions

log = logging.getLogger(__name__)

# TLS 1.2 suites (TLS 1.3 is unaffected): ECDHE with AEAD or SHA-2 MACs only, at OpenSSL security
# level 0 so that a client sending no signature_algorithms extension (busybox wget's own TLS, i.e.
# every busybox pod) gets the SHA-1 server signature RFC 5246 §7.4.1.4.1 prescribes, as Go's
# crypto/tls (kube-apiserver) gives it (crypto/tls/auth.go); level 2, OpenSSL's default, refused
# the handshake. The suite list keeps out what level 0 would otherwise let in (no RSA key
# exchange, no SHA-1 MACs, so no TLS < 1.2 either).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:ECDHE+AES:!aNULL:!SHA1:@SECLEVEL=0"


def _parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"--listen must be ADDR:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


def parse_duration(text: str) -> float:
    """``40s``, ``5m``, ``1h`` or plain seconds."""
    t = text.strip()
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for suffix in ("ms", "s", "m", "h"):
        if t.endswith(suffix) and t[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(t[: -len(suffix)]) * units[suffix]
    try:
        return float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (use e.g. 40s, 5m)") from None


def open_store(
    kind: str, data_dir: Path, etcd_endpoints: list[str] | None, etcd_tls: tuple[Any, Any, Any] = (None, None, None)
) -> Any:
    """The store, or SystemExit with a one-line reason (a bad flag or file, etcd unreachable)."""
    from controlplane.storage.factory import open_store as factory_open
    from controlplane.storage.interface import StoreError

    try:
        return factory_open(kind, data_dir, etcd_endpoints, etcd_tls)
    except (ValueError, StoreError) as exc:
        raise SystemExit(f"kubelab apiserver: {exc}") from None


#: Bodies up to this size are joined to the held headers; bigger ones are written after them.
_COALESCE_MAX = 64 * 1024


class CoalescingTransport:
    """A transport whose writes made in one event-loop turn leave in one ``write`` (one TLS record).

    uvicorn writes a response's status line and headers, then its body, as two ``write`` calls; on
    TLS each costs an encryption, a record and a ``send`` system call. Here a write is held until
    the next one (which takes it along) or the end of the current loop turn (``call_soon``),
    whichever comes first: order is kept and nothing waits longer than the turn it was written in.
    Everything else is the wrapped transport's.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self._held
        if held is None:
            self._held = bytes(data)
            self._loop.call_soon(self._flush)
        elif len(data) > _COALESCE_MAX:  # a big body: one more record beats copying it
            self._held = None
            self._transport.write(held)
            self._transport.write(data)
        else:
            self._held = None
            self._transport.write(held + data)

    def _flush(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


#: Go's answer to a header section over ``MaxHeaderBytes`` (net/http server.go), then it closes.
_HEADERS_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n\r\n431 Request Header Fields Too Large"
)


def _protocol_classes(
    peers: PeerIdentities,
    read_header_timeout: float = limits.READ_HEADER_TIMEOUT,
    max_header_bytes: int = limits.MAX_HEADER_BYTES,
) -> tuple[type[Any], type[Any]]:
    """uvicorn HTTP and WebSocket protocol classes that record the TLS peer's certificate subject.

    The HTTP class also holds the header limits of ``controlplane.api.limits`` (httptools has
    none): a request whose headers are not complete ``read_header_timeout`` seconds after the
    connection opened or the request began is closed, and one whose header section exceeds
    ``max_header_bytes`` gets Go's 431 and is closed. Bytes are counted as they arrive, so the
    check costs one addition per read, and nothing once the headers are in.
    """
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.protocols.websockets.wsproto_impl import WSProtocol

    from controlplane.apiserver import spdy_upgrade

    class HttpWithPeer(HttpToolsProtocol):
        # Header read deadline: one timer per connection, not per request (a timer armed and
        # cancelled per request cost several µs on the create path). A request's start time is
        # noted; the timer, when it fires, closes the connection if headers are still incomplete
        # past the deadline, re-arms for the rest of the time if they are incomplete but younger,
        # and lapses otherwise (the next request arms it again).
        _kubelab_in_headers = True  # until the first request's headers are complete
        _kubelab_header_bytes = 0
        _kubelab_header_start = 0.0
        _kubelab_header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            self._kubelab_peer = peers.note(transport)
            super().connection_made(CoalescingTransport(transport, asyncio.get_running_loop()))  # type: ignore[arg-type]
            self._kubelab_header_start = self.loop.time()
            self._kubelab_arm_header_timer(read_header_timeout)

        def connection_lost(self, exc: Exception | None) -> None:
            if self._kubelab_header_timer is not None:
                self._kubelab_header_timer.cancel()
                self._kubelab_header_timer = None
            super().connection_lost(exc)
            peers.forget(getattr(self, "_kubelab_peer", None))

        def _kubelab_arm_header_timer(self, delay: float) -> None:
            self._kubelab_header_timer = self.loop.call_later(delay, self._kubelab_header_deadline)

        def _kubelab_header_deadline(self) -> None:
            self._kubelab_header_timer = None
            if not self._kubelab_in_headers or self.transport.is_closing():
                return
            left = self._kubelab_header_start + read_header_timeout - self.loop.time()
            if left > 0.01:
                self._kubelab_arm_header_timer(left)  # a later request: its own deadline
            else:
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._kubelab_in_headers:
                self._kubelab_header_bytes += len(data)
            super().data_received(data)
            if (
                self._kubelab_in_headers
                and self._kubelab_header_bytes > max_header_bytes
                and not self.transport.is_closing()
            ):
                self.transport.write(_HEADERS_TOO_LARGE)
                self.transport.close()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._kubelab_in_headers = True
            self._kubelab_header_bytes = 0
            self._kubelab_header_start = self.loop.time()
            if self._kubelab_header_timer is None:
                self._kubelab_arm_header_timer(read_header_timeout)

        def on_headers_complete(self) -> None:
            self._kubelab_in_headers = False
            super().on_headers_complete()

        # Raw SPDY port-forward (kubectl ≤1.30) takes the connection over: see spdy_upgrade.
        # uvicorn asks only for requests that carry an Upgrade, so other requests pay nothing.
        def _should_upgrade(self) -> bool:
            return super()._should_upgrade() or spdy_upgrade.wanted(self.headers)

        def handle_websocket_upgrade(self) -> None:
            if spdy_upgrade.wanted(self.headers):
                spdy_upgrade.take_over(self, lambda: peers.forget(getattr(self, "_kubelab_peer", None)))
            else:
                super().handle_websocket_upgrade()

    class WsWithPeer(WSProtocol):
        def connection_made(self, transport: Any) -> None:  # type: ignore[override]
            self._kubelab_peer = peers.note(transport)
            super().connection_made(transport)

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            peers.forget(getattr(self, "_kubelab_peer", None))

    return HttpWithPeer, WsWithPeer


class DirectApp:
    """What uvicorn serves: HTTP and WebSocket requests go straight to the ``ApiServer``.

    ``create_app`` returns a FastAPI app (its lifespan starts and stops the server, and in-process
    users such as tests get a familiar ASGI app), but the API server answers every request itself:
    the FastAPI/Starlette middleware layers around it (error and telemetry wrappers, body limit)
    would only add per-request cost. Lifespan events still go through FastAPI.
    """

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state = app.state  # ``state.apiserver``, as on the FastAPI app
        self.server = app.state.apiserver

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
        else:
            await self.server(scope, receive, send)


#: gen0 collections every this many net allocations of container objects (CPython's default: 700).
#: A request allocates a few hundred dicts and lists; at the default, a young collection ran every
#: few requests. Older generations keep their default ratios.
GC_GEN0_THRESHOLD = 20_000


def tune_gc() -> None:
    """Garbage collection policy for a long-running server process (call once it has started).

    Everything alive after startup (modules, OpenAPI schemas, the store's index) is moved to the
    permanent generation with ``gc.freeze``, so full collections no longer walk it, and young
    collections run less often. Python's collector stops the world; in a server its pauses are
    the latency tail, so fewer and smaller collections are a latency measure, not only a CPU one.
    """
    import gc

    gc.collect()
    gc.freeze()
    _g0, g1, g2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, g1, g2)


def add_server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-dir", type=Path, default=Path("/var/lib/kubelab"), help="PKI, kubeconfig and the sqlite store"
    )
    p.add_argument("--listen", default="0.0.0.0:6443", help="ADDR:PORT to serve HTTPS on")
    p.add_argument("--store", choices=("sqlite", "etcd", "memory"), default="sqlite")
    p.add_argument("--etcd-endpoints", default="", help="comma-separated etcd client URLs (--store etcd)")
    p.add_argument("--etcd-cafile", type=Path, default=None, help="verify https etcd endpoints with this CA")
    p.add_argument("--etcd-certfile", type=Path, default=None, help="client certificate shown to etcd (TLS)")
    p.add_argument("--etcd-keyfile", type=Path, default=None, help="its key")
    p.add_argument("--advertise-address", default="", help="address in the kubernetes Endpoints (default: listen addr)")
    p.add_argument("--tls-san", action="append", default=[], help="extra IP or DNS name for the serving cert")
    p.add_argument("--token-auth-file", type=Path, default=None, help="static bearer tokens (token,user,uid,groups)")
    p.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    p.add_argument("--service-node-port-range", default="30000-32767")
    p.add_argument("--kubelet-certificate-authority", type=Path, default=None, help="CA to verify kubelets with")
    p.add_argument("--watch-bookmark-interval", type=parse_duration, default=60.0, help=argparse.SUPPRESS)
    p.add_argument(
        "--etcd-compaction-interval", type=parse_duration, default=300.0, help="store compaction interval (0: off)"
    )
    p.add_argument("--event-ttl", type=parse_duration, default=3600.0, help="how long Events are kept (1h)")
    p.add_argument("--watch-cache-window", type=int, default=100_000, help=argparse.SUPPRESS)
    p.add_argument("--watch-max-pending", type=int, default=10_000, help=argparse.SUPPRESS)
    p.add_argument("--store-threads", type=int, default=16, help=argparse.SUPPRESS)
    p.add_argument(
        "--endpoint-reconciler-type",
        choices=("lease", "none"),
        default="lease",
        help="lease: default/kubernetes lists every live API server (endpointreconciler.py)",
    )
    p.add_argument("--endpoint-reconciler-ttl", type=parse_duration, default=15.0, help=argparse.SUPPRESS)
    p.add_argument(
        "--read-header-timeout",
        type=parse_duration,
        default=limits.READ_HEADER_TIMEOUT,
        help=argparse.SUPPRESS,  # kube-apiserver's 32 s; tests shorten it
    )
    p.add_argument("--anonymous-auth", action="store_true", help="serve requests without credentials as anonymous")
    p.add_argument(
        "--service-account-issuer",
        default="https://kubernetes.default.svc.cluster.local",
        help="the iss of ServiceAccount tokens",
    )
    p.add_argument(
        "--service-account-signing-key-file",
        type=Path,
        default=None,
        help="signs tokens (default <data-dir>/pki/sa.key)",
    )
    p.add_argument(
        "--service-account-key-file", type=Path, action="append", default=[], help="extra token verification key"
    )
    p.add_argument("--api-audiences", default="", help="comma-separated audiences tokens must name (default: issuer)")
    p.add_argument(
        "--disable-admission-plugins", default="", help="comma-separated, e.g. ServiceAccount (needs no controllers)"
    )
    p.add_argument(
        "--authorization-mode",
        default="Node,RBAC",
        help="ordered authorizers, comma-separated: Node, RBAC, AlwaysAllow, AlwaysDeny (default Node,RBAC)",
    )


def build(args: argparse.Namespace, on_started: Any = None) -> tuple[Any, Any, Any]:
    """(uvicorn.Config, store, pki) for parsed flags."""
    import uvicorn

    from controlplane.apiserver.app import create_app

    host, port = _parse_listen(args.listen)
    advertise = args.advertise_address or (host if host not in ("0.0.0.0", "::", "") else "127.0.0.1")
    ips = list(pkimod.DEFAULT_SERVER_IPS)
    names = list(pkimod.DEFAULT_SERVER_NAMES)
    for extra in [host, advertise, *args.tls_san]:
        if not extra or extra in ("0.0.0.0", "::"):
            continue
        try:
            import ipaddress

            ipaddress.ip_address(extra)
            ips.append(extra)
        except ValueError:
            names.append(extra)
    url_host = advertise if host in ("0.0.0.0", "::", "") else host
    data_dir: Path = args.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    pki = pkimod.ensure_cluster_pki(data_dir, ips, names, server_url=f"https://{url_host}:{port}")
    agg = pkimod.ensure_aggregator_pki(data_dir, f"https://{url_host}:{port}")  # --proxy-client-cert-file
    endpoints = [e for e in args.etcd_endpoints.split(",") if e]
    store = open_store(
        args.store, data_dir, endpoints or None, (args.etcd_cafile, args.etcd_certfile, args.etcd_keyfile)
    )
    peers = PeerIdentities()

    def started() -> None:
        tune_gc()
        if on_started is not None:
            on_started()

    options = ServerOptions(
        service_cluster_ip_range=args.service_cluster_ip_range,
        service_node_port_range=args.service_node_port_range,
        token_auth_file=args.token_auth_file,
        peer_identities=peers,
        anonymous_auth=args.anonymous_auth,
        authorization_mode=args.authorization_mode,
        kubelet_client_cert=pki.kubelet_client_cert,
        kubelet_client_key=pki.kubelet_client_key,
        kubelet_ca=args.kubelet_certificate_authority,
        advertise_address=advertise,
        secure_port=port,
        watch_bookmark_interval=args.watch_bookmark_interval,
        compaction_interval=args.etcd_compaction_interval,
        event_ttl=args.event_ttl,
        watch_cache_window=args.watch_cache_window,
        watch_max_pending=args.watch_max_pending,
        store_threads=args.store_threads,
        endpoint_reconciler_type=args.endpoint_reconciler_type,
        endpoint_reconciler_ttl=args.endpoint_reconciler_ttl,
        on_started=started,
        service_account_signing_key_file=args.service_account_signing_key_file or pki.sa_key,
        service_account_key_files=tuple(args.service_account_key_file),
        service_account_issuer=args.service_account_issuer,
        api_audiences=tuple(a for a in args.api_audiences.split(",") if a),
        disable_admission_plugins=tuple(a.strip() for a in args.disable_admission_plugins.split(",") if a.strip()),
        extra={
            "proxy_client_cert": str(agg.front_proxy_client_cert),
            "proxy_client_key": str(agg.front_proxy_client_key),
        },
    )
    app = create_app(store, options=options)
    http_cls, ws_cls = _protocol_classes(peers, read_header_timeout=args.read_header_timeout)
    config = uvicorn.Config(
        DirectApp(app),
        host=host,
        port=port,
        http=http_cls,
        ws=ws_cls,
        loop="uvloop",
        lifespan="on",
        log_level="warning",
        access_log=False,
        # Clients talk to the API server directly: no X-Forwarded-For rewriting of the peer
        # address (which x509 identities are looked up by), and one middleware less per request.
        proxy_headers=False,
        ssl_certfile=str(pki.serving_cert),
        ssl_keyfile=str(pki.serving_key),
        ssl_ca_certs=str(pki.ca_cert),
        ssl_cert_reqs=ssl.CERT_OPTIONAL,
        ssl_ciphers=TLS12_CIPHERS,
        timeout_graceful_shutdown=2,
        # Clients pool connections for long (client-go: 90 s idle); closing them after uvicorn's
        # default 5 s makes some clients fail a request on a connection the server just dropped.
        timeout_keep_alive=120,
        backlog=2048,
    )
    return config, store, pki


def make_server(config: Any, on_shutdown: Any = None) -> Any:
    """A uvicorn Server that ends watch streams as soon as shutdown starts.

    uvicorn waits for open requests before running the app's lifespan shutdown; watches never end
    on their own, so without this they would be cancelled (with tracebacks) after the grace period.
    """
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: Any = None) -> None:
            if on_shutdown is not None:
                on_shutdown()  # in-process components stop before their watches end
            api = getattr(getattr(config.app, "state", None), "apiserver", None)
            if api is not None:
                api.begin_shutdown()
            await super().shutdown(sockets)

    return Server(config)


def run_apiserver(args: argparse.Namespace) -> int:

    config, store, pki = build(args)
    log.info("serving the Kubernetes API on https://%s (admin kubeconfig: %s)", args.listen, pki.admin_kubeconfig)
    try:
        make_server(config).run()
    finally:
        store.close()
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("apiserver", help="run the Kubernetes API server")
    add_server_flags(p)
    p.set_defaults(func=run_apiserver)
