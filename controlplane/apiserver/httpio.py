"""Raw ASGI request/response plumbing for the API server (no per-request framework objects).

Role: the server answers every request itself at the ASGI level (see ``routes.py``): this module
parses what it needs from the scope (path, query, headers), reads the body under a size limit, and
sends complete JSON responses or chunked streams. Bodies are encoded with orjson.

Invariants: every error response is a ``Status`` object (``errors.ApiError.to_status``); a body
larger than the limit is refused with 413 before it is read completely; bodies and integer query
parameters are decoded only through ``controlplane.api.limits`` (the one owner of every
request-decoding limit: body size, YAML aliases and depth, JSON depth, echoed values, header size
and read time, int64 parameters — each documented there with its Kubernetes source).

Concurrency: a ``Request`` belongs to one ASGI call on the event loop.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import orjson
import yaml

from controlplane.api import errors, limits

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON = "application/json"


class Request:
    __slots__ = ("_headers", "client", "method", "path", "query", "receive", "scope", "user")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope.get("method", "GET")
        self.path: str = scope["path"]
        qs = scope.get("query_string", b"")
        self.query: dict[str, list[str]] = parse_qs(qs.decode("latin-1"), keep_blank_values=True) if qs else {}
        self._headers: dict[str, str] | None = None
        self.client = scope.get("client")
        self.user: Any = None

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            h: dict[str, str] = {}
            for k, v in self.scope.get("headers", ()):
                key = k.decode("latin-1").lower()
                val = v.decode("latin-1")
                h[key] = f"{h[key]},{val}" if key in h else val
            self._headers = h
        return self._headers

    def q(self, name: str, default: str = "") -> str:
        v = self.query.get(name)
        return v[-1] if v else default

    def q_bool(self, name: str) -> bool:
        return self.q(name).lower() in ("1", "true", "yes")

    def q_int(self, name: str) -> int | None:
        v = self.q(name)
        if v == "":
            return None
        return limits.query_int(name, v)  # int64, as Kubernetes parses it (400 beyond)

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    async def body(self, limit: int) -> bytes:
        declared = self.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise errors.RequestEntityTooLarge(f"request body too large: {declared} bytes (limit {limit})")
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await self.receive()
            if msg["type"] == "http.disconnect":
                break
            chunk = msg.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise errors.RequestEntityTooLarge(f"request body too large: over {limit} bytes")
                chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        return b"".join(chunks)


def decode_body(body: bytes, content_type: str) -> Any:
    """JSON or YAML → Python value. Missing content type means JSON (the Python client sends none).

    Both decoders are the bounded ones of ``controlplane.api.limits`` (nesting depth, YAML alias
    expansion): a body beyond them is a 400 before anything is expanded.
    """
    if not body.strip():
        raise errors.BadRequest("the request body is empty")
    if content_type in ("", JSON, "*/*", "text/json"):
        try:
            return limits.json_loads(body)
        except limits.LimitExceeded as e:
            raise errors.BadRequest(f"the request body is not valid JSON: json: {e}") from None
        except orjson.JSONDecodeError as e:
            if content_type:
                raise errors.BadRequest(f"the request body is not valid JSON: {e}") from e
            # no content type: try YAML too before giving up
    elif content_type not in ("application/yaml", "application/x-yaml", "text/yaml"):
        if content_type == "application/vnd.kubernetes.protobuf":
            from controlplane.apiserver import protobuf

            return protobuf.decode(body)
        raise errors.UnsupportedMediaType(
            f"unsupported content type {limits.show(content_type)}; send application/json or application/yaml"
        )
    try:
        return limits.yaml_load(body)
    except yaml.YAMLError as e:
        raise errors.BadRequest(f"the request body is not valid JSON or YAML: {e}") from e


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


async def send_response(
    send: Send,
    status: int,
    body: bytes,
    content_type: str = JSON,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    raw = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
    if headers:
        raw.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def send_json(send: Send, status: int, value: Any, content_type: str = JSON) -> None:
    await send_response(send, status, orjson.dumps(value), content_type)


async def send_error(send: Send, err: errors.ApiError) -> None:
    headers = None
    if err.retry_after is not None:
        headers = [(b"retry-after", str(err.retry_after).encode())]
    # Kubernetes' JSON serializer ends every body with a newline (Go's json.Encoder); the Python
    # client's FailToCreateError quotes the body verbatim, and its e2e suite compares that text.
    await send_response(send, err.code, orjson.dumps(err.to_status()) + b"\n", JSON, headers)


async def start_stream(send: Send, content_type: str = JSON, status: int = 200) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type.encode()), (b"cache-control", b"no-cache, private")],
        }
    )
