"""The REST client: typed-by-``Resource`` calls over one pooled, thread-safe ``httpx.Client``.

Role: every component's only way to reach the API server. Paths come from
``controlplane.api.registry.Resource`` (``collection_path``/``item_path``), bodies are plain JSON
dicts (orjson), and every non-2xx answer becomes the matching ``controlplane.api.errors.ApiError``
through ``errors.from_status`` — so callers write ``except errors.NotFound`` / ``errors.Conflict``.

Watches (``watch``) are streamed: one JSON event per line, decoded as it arrives into
``WatchEvent(type, object)``. ``BOOKMARK`` events are passed through (they carry only a
resourceVersion); an ``ERROR`` event (e.g. ``410 Expired`` for a too-old resourceVersion) is
raised as its ``ApiError`` from the iterator, after which the stream is finished.

Transport failures (connection refused, reset, timeouts) surface as ``httpx.TransportError``;
callers that loop (informers, leader election) treat them as "retry later".

Concurrency: one ``ApiClient`` may be shared by any number of threads (the pool is thread-safe);
each watch holds one pooled connection until closed. Underneath the ``httpx.Client`` runs
``transport.StdlibTransport`` (``http.client`` connections: about half the CPU per request of
httpx's default transport) unless ``transport=`` is given or ``KUBELAB_CLIENT_TRANSPORT=httpcore``.
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx
import orjson

from controlplane.api import errors
from controlplane.api.registry import Resource
from controlplane.client.kubeconfig import ClientConfig, load_kubeconfig
from controlplane.client.transport import StdlibTransport

JSON = "application/json"
PATCH_TYPES = {
    "json": "application/json-patch+json",
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}


@dataclass
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED, BOOKMARK
    object: dict[str, Any]


def _error_from(status: int, data: bytes) -> errors.ApiError:
    try:
        body = orjson.loads(data)
        if not isinstance(body, dict):
            body = {"message": str(body)}
    except orjson.JSONDecodeError:
        text = data.decode("utf-8", "replace").strip()
        body = {"message": text or f"HTTP {status}"}
    return errors.from_status(status, body)


def _raise_for(resp: httpx.Response) -> None:
    if resp.status_code < 400:
        return
    raise _error_from(resp.status_code, resp.read())


class WatchStream:
    """An open watch: iterate for ``WatchEvent``s; ``close()`` (any thread) ends it."""

    def __init__(self, response: httpx.Response) -> None:
        self._resp = response
        self._closed = False
        self._reader: int | None = None  # thread iterating the stream

    def __iter__(self) -> Iterator[WatchEvent]:
        buf = b""
        self._reader = threading.get_ident()
        try:
            for chunk in self._resp.iter_bytes():
                buf += chunk
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line, buf = buf[:nl], buf[nl + 1 :]
                    if line.strip():
                        yield self._decode(line)
            if buf.strip():
                yield self._decode(buf)
        except (httpx.StreamClosed, httpx.ReadError, httpx.RemoteProtocolError):
            if not self._closed:
                raise
        finally:
            self._reader = None
            self._closed = False
            self.close()

    @staticmethod
    def _decode(line: bytes) -> WatchEvent:
        try:
            ev = orjson.loads(line)
        except orjson.JSONDecodeError as e:
            raise errors.ApiError(f"watch: undecodable event: {line[:200]!r}") from e
        etype = ev.get("type")
        obj = ev.get("object") or {}
        if etype == "ERROR":
            raise errors.from_status(int(obj.get("code") or 500), obj)
        return WatchEvent(str(etype), obj)

    def close(self) -> None:
        """End the stream. From another thread this only shuts the socket down: the reading
        thread then sees end-of-stream and releases the connection itself (closing an SSL
        connection under a concurrent read corrupts it — and the pool could hand it out again)."""
        if self._closed:
            return
        self._closed = True
        if self._reader is not None and self._reader != threading.get_ident():
            stream = self._resp.extensions.get("network_stream")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                try:
                    # The plain socket's shutdown: SSLSocket.shutdown would also drop its SSL object
                    # under the reader's feet.
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass
                return
        try:
            self._resp.close()
        except Exception:  # already broken: it is closed anyway
            pass

    def __enter__(self) -> WatchStream:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def _ns_of(res: Resource, obj: dict[str, Any], namespace: str | None) -> str | None:
    if not res.namespaced:
        return None
    return namespace or (obj.get("metadata") or {}).get("namespace") or "default"


class ApiClient:
    def __init__(
        self,
        server: str,
        *,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        token: str | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        config: ClientConfig | None = None,
        user_agent: str = "kubelab",
    ) -> None:
        cfg = config or ClientConfig(server=server, ca_file=ca_file, cert_file=cert_file, key_file=key_file)
        if token:
            cfg.token = token
        self.config = cfg
        self.server = cfg.server.rstrip("/")
        self.timeout = timeout
        headers = {"Accept": JSON, "User-Agent": user_agent}
        if cfg.token:
            headers["Authorization"] = f"Bearer {cfg.token}"
        kwargs: dict[str, Any] = {}
        self._fast: StdlibTransport | None = None
        if transport is not None:
            kwargs["transport"] = transport
        elif os.environ.get("KUBELAB_CLIENT_TRANSPORT", "stdlib") == "httpcore":
            kwargs["verify"] = cfg.ssl_context()
        else:
            ctx = cfg.ssl_context()
            self._fast = StdlibTransport(ctx if isinstance(ctx, ssl.SSLContext) else None)
            kwargs["transport"] = self._fast
            parts = urllib.parse.urlsplit(self.server)
            scheme = parts.scheme or "https"
            port = parts.port or (443 if scheme == "https" else 80)
            host = parts.hostname or "localhost"
            self._fast_key = (scheme, host, port)
            self._fast_prefix = parts.path.rstrip("/")
            default_port = (scheme == "https" and port == 443) or (scheme == "http" and port == 80)
            self._fast_headers = [("Host", host if default_port else f"{host}:{port}"), *headers.items()]
        self._http = httpx.Client(
            base_url=self.server,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
            **kwargs,
        )

    @classmethod
    def from_kubeconfig(cls, path: str | os.PathLike[str], *, context: str | None = None, **kw: Any) -> ApiClient:
        cfg = load_kubeconfig(path, context)
        return cls(cfg.server, config=cfg, **kw)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw ----------------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        content: bytes | None = None,
        content_type: str = JSON,
        timeout: float | None = None,
    ) -> Any:
        """Send one request; return the decoded JSON body (or text when not JSON); raise ApiError."""
        headers = {}
        if body is not None:
            content = orjson.dumps(body)
        if content is not None:
            headers["Content-Type"] = content_type
        p = {k: v for k, v in (params or {}).items() if v not in (None, "")}
        if self._fast is not None:
            return self._fast_request(method, path, p, content, content_type, timeout)
        resp = self._http.request(
            method,
            path,
            params=p,
            content=content,
            headers=headers,
            timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
        )
        _raise_for(resp)
        if not resp.content:
            return None
        if resp.headers.get("content-type", "").startswith("application/json"):
            return orjson.loads(resp.content)
        return resp.text

    def _fast_request(
        self,
        method: str,
        path: str,
        params: dict[str, Any],
        content: bytes | None,
        content_type: str,
        timeout: float | None,
    ) -> Any:
        """``request`` straight over the connection pool, skipping httpx's URL and model building."""
        assert self._fast is not None
        target = self._fast_prefix + urllib.parse.quote(path, safe="/:@!$&'()*+,;=-._~")
        if params:
            target += "?" + urllib.parse.urlencode({k: str(v) for k, v in params.items()})
        headers = list(self._fast_headers)
        if content is not None:
            headers.append(("Content-Type", content_type))
            headers.append(("Content-Length", str(len(content))))
        elif method in ("POST", "PUT", "PATCH"):
            headers.append(("Content-Length", "0"))
        status, ctype, data = self._fast.simple_request(
            self._fast_key, method, target, headers, content, timeout if timeout is not None else self.timeout
        )
        if status >= 400:
            raise _error_from(status, data)
        if not data:
            return None
        if ctype.startswith("application/json"):
            return orjson.loads(data)
        return data.decode("utf-8", "replace")

    # -- resources ----------------------------------------------------------------------------------
    def get(self, res: Resource, name: str, namespace: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", res.item_path(name, namespace if res.namespaced else None))
        return result

    def list(
        self,
        res: Resource,
        namespace: str | None = None,
        label_selector: str = "",
        field_selector: str = "",
        resource_version: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
    ) -> dict[str, Any]:
        params = {
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "resourceVersion": resource_version,
            "limit": limit,
            "continue": continue_,
        }
        result: dict[str, Any] = self.request(
            "GET", res.collection_path(namespace if res.namespaced else None), params=params
        )
        return result

    def create(self, res: Resource, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request("POST", res.collection_path(_ns_of(res, obj, namespace)), body=obj)
        return result

    def _item_path_of(self, res: Resource, obj: dict[str, Any], sub: str | None = None) -> str:
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not name:
            raise ValueError(f"{res.kind} has no metadata.name")
        return res.item_path(str(name), _ns_of(res, obj, None), sub)

    def update(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("PUT", self._item_path_of(res, obj), body=obj)
        return result

    def update_status(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.request("PUT", self._item_path_of(res, obj, "status"), body=obj)
        return result

    def patch(
        self,
        res: Resource,
        name: str,
        body: Any,
        namespace: str | None = None,
        patch_type: str = "merge",
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool | None = None,
    ) -> dict[str, Any]:
        if patch_type not in PATCH_TYPES:
            raise ValueError(f"unknown patch type {patch_type!r}; one of {sorted(PATCH_TYPES)}")
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        params: dict[str, Any] = {"fieldManager": field_manager}
        if force is not None:
            params["force"] = "true" if force else "false"
        result: dict[str, Any] = self.request(
            "PATCH",
            res.item_path(name, namespace if res.namespaced else None, subresource),
            params=params,
            content=content,
            content_type=PATCH_TYPES[patch_type],
        )
        return result

    def delete(
        self,
        res: Resource,
        name: str,
        namespace: str | None = None,
        grace_period_seconds: int | None = None,
        propagation_policy: str | None = None,
        preconditions: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        opts: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace_period_seconds is not None:
            opts["gracePeriodSeconds"] = grace_period_seconds
        if propagation_policy is not None:
            opts["propagationPolicy"] = propagation_policy
        if preconditions is not None:
            opts["preconditions"] = preconditions
        result = self.request("DELETE", res.item_path(name, namespace if res.namespaced else None), body=opts)
        return result if isinstance(result, dict) else {}

    def post_subresource(self, res: Resource, name: str, sub: str, body: Any, namespace: str | None = None) -> Any:
        return self.request("POST", res.item_path(name, namespace if res.namespaced else None, sub), body=body)

    def get_subresource(
        self,
        res: Resource,
        name: str,
        sub: str,
        namespace: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        return self.request("GET", res.item_path(name, namespace if res.namespaced else None, sub), params=params)

    def watch(
        self,
        res: Resource,
        namespace: str | None = None,
        resource_version: str = "",
        label_selector: str = "",
        field_selector: str = "",
        timeout_seconds: int | None = None,
        allow_bookmarks: bool = True,
    ) -> WatchStream:
        params: dict[str, str] = {"watch": "true"}
        if resource_version:
            params["resourceVersion"] = resource_version
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if timeout_seconds is not None:
            params["timeoutSeconds"] = str(int(timeout_seconds))
        if allow_bookmarks:
            params["allowWatchBookmarks"] = "true"
        # No read timeout for an open-ended watch: silence is normal; the server ends it.
        read = None if timeout_seconds is None else timeout_seconds + 30.0
        req = self._http.build_request(
            "GET",
            res.collection_path(namespace if res.namespaced else None),
            params=params,
            timeout=httpx.Timeout(self.timeout, connect=10.0, read=read),
        )
        resp = self._http.send(req, stream=True)
        if resp.status_code >= 400:
            try:
                resp.read()
            finally:
                resp.close()
            _raise_for(resp)
        return WatchStream(resp)
