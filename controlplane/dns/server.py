"""The cluster DNS server's shell: informers feed a view, asyncio sockets serve it on UDP and TCP.

Role: the imperative half of ``kubelab dns``. ``ClusterView`` keeps informers on Services and
EndpointSlices (all namespaces) and rebuilds the resolver's ``View`` (``resolver.build_view``) when
either changes; ``DnsServer`` answers on one address over UDP (datagram endpoint) and TCP (stream
server, RFC 1035 length-prefixed messages, several per connection, idle connections closed) with
``resolver.resolve_wire`` on whatever view is current.

Invariants: a query is answered from one whole view (views are immutable and swapped by a single
reference assignment); a change seen by an informer is in the view after one rebuild (coalesced:
any number of events while a rebuild runs cause one more rebuild, never a lost one); until the
informers have listed once, the view is empty (the zone's SOA/NS only), so names answer NXDOMAIN
rather than hang. No query is ever forwarded anywhere: the server only answers from the view.

Concurrency: the informers run their own threads and only add the one key ``VIEW_KEY`` to a work
queue; one builder thread (the client's ``worker_loop``) rebuilds and publishes views; the sockets
are served by one asyncio event loop (the caller's). Reading the current view from the loop needs
no lock (a reference read).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

from controlplane.api import models
from controlplane.api.registry import ENDPOINTSLICES, SERVICES
from controlplane.client.controller import worker_loop
from controlplane.client.informer import Informer
from controlplane.client.rest import ApiClient
from controlplane.client.workqueue import WorkQueue
from controlplane.dns import resolver

log = logging.getLogger(__name__)

Obj = dict[str, Any]
TCP_IDLE_TIMEOUT = 10.0  # seconds a TCP client may stay silent between queries (RFC 7766 suggests ~10 s)
UDP_LIMIT = resolver.UDP_DEFAULT_PAYLOAD
#: The view builder's only work-queue key: any change means "build the view again".
VIEW_KEY = "view"


class ClusterView:
    """Services + EndpointSlices through informers → the current ``resolver.View``."""

    def __init__(
        self,
        client: ApiClient,
        *,
        zone: str = resolver.DEFAULT_ZONE,
        dns_service_ip: str | None = None,
        reverse_cidrs: Iterable[str] = (),
        resync_period: float = 0.0,
    ) -> None:
        self.zone = zone
        self.dns_service_ip = dns_service_ip
        self.reverse_cidrs = tuple(reverse_cidrs)
        self.services = Informer(client, SERVICES, resync_period=resync_period, name="dns-services")
        self.slices = Informer(client, ENDPOINTSLICES, resync_period=resync_period, name="dns-endpointslices")
        # typed read models, decoded once per change; the view is rebuilt from these
        self.service_models = self.services.view(models.Service.decode)
        self.slice_models = self.slices.view(models.EndpointSlice.decode)
        self._view = self._build()
        # A key added while a build runs is re-queued when it ends: one more build, never a lost one.
        self.queue: WorkQueue[str] = WorkQueue("dns-view")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._listeners: list[Callable[[Obj], None]] = []
        self.builds = 0
        for inf in (self.services, self.slices):
            inf.add_handler(
                on_add=self._changed, on_update=lambda old, new: self._changed(new), on_delete=self._changed
            )

    def on_change(self, fn: Callable[[Obj], None]) -> None:
        """Also call ``fn(obj)`` (in an informer thread) for every Service/EndpointSlice change."""
        self._listeners.append(fn)

    def _changed(self, obj: Obj) -> None:
        self.queue.add(VIEW_KEY)
        for fn in self._listeners:
            try:
                fn(obj)
            except Exception:
                log.exception("change listener failed")

    def _build(self) -> resolver.View:
        return resolver.build_view(
            self.service_models.list(),
            self.slice_models.list(),
            zone=self.zone,
            serial=int(time.time()),
            dns_service_ip=self.dns_service_ip,
            reverse_cidrs=self.reverse_cidrs,
        )

    @property
    def view(self) -> resolver.View:
        return self._view

    def start(self) -> None:
        self.services.start()
        self.slices.start()
        self._thread = threading.Thread(target=self._run, name="dns-view-builder", daemon=True)
        self._thread.start()

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        return self.services.wait_for_sync(timeout) and self.slices.wait_for_sync(timeout)

    def _run(self) -> None:
        worker_loop(self.queue, self._rebuild, self._stop)

    def _rebuild(self, _key: str) -> None:
        try:
            self._view = self._build()
            self.builds += 1
        except Exception:  # no retry: the next change builds again
            log.exception("building the DNS view failed; keeping the previous one")

    def stop(self) -> None:
        self._stop.set()
        self.queue.shutdown()
        self.services.stop()
        self.slices.stop()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, current: Callable[[], resolver.View]) -> None:
        self.current = current
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's UDP transport is not a subclass of asyncio's: no isinstance check)
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        try:
            out = resolver.resolve_wire(self.current(), data, max_size=UDP_LIMIT)
        except Exception:
            log.exception("answering a UDP query from %s failed", addr)
            return
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP socket error: %s", exc)


class DnsServer:
    """Serve ``current()`` on ``host:port`` over UDP and TCP (``port`` 0: pick one; see ``.port``)."""

    def __init__(self, current: Callable[[], resolver.View], host: str, port: int) -> None:
        self.current = current
        self.host = host
        self.port = port
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # TCP first: with port 0 the kernel picks it, and UDP then binds the same number.
        self._tcp = await asyncio.start_server(self._serve_tcp, self.host, self.port, reuse_address=True)
        self.port = int(self._tcp.sockets[0].getsockname()[1])
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self.current), local_addr=(self.host, self.port)
            )
        except OSError:
            self._tcp.close()
            raise
        self._udp = transport
        log.info("serving DNS on %s:%d (UDP and TCP)", self.host, self.port)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readexactly(2), TCP_IDLE_TIMEOUT)
                    body = await asyncio.wait_for(reader.readexactly(int.from_bytes(head, "big")), TCP_IDLE_TIMEOUT)
                except (asyncio.IncompleteReadError, TimeoutError, ConnectionError):
                    return
                out = resolver.resolve_wire(self.current(), body, max_size=None)
                if out is None:
                    return
                writer.write(resolver.frame(out))
                await writer.drain()
        except Exception:
            log.exception("serving a TCP DNS client failed")
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
            await self._tcp.wait_closed()
