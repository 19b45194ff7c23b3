"""The dashboard's HTTP side: a read-only FastAPI app behind a bearer token.

Role: serve the page (``static/``), the live state as server-sent events (``/api/stream``: one
``state`` event per published ``hub.State``), a pod's logs followed through the API's
``pods/log`` (``/api/logs/NS/NAME``), what ``kubelab trace`` says about a Service
(``/api/trace/NS/NAME``) and where a pod lives in the kernel (``/api/pod/NS/NAME``).

Authentication: every route but ``/healthz`` needs the dashboard's token — ``Authorization: Bearer
TOKEN``, or the ``kubelab-dashboard`` cookie that ``GET /?token=TOKEN`` sets (a browser's
EventSource cannot send headers). A missing or wrong token gets ``401`` with a Kubernetes
``Status`` body (reason ``Unauthorized``), as kube-apiserver answers an unauthenticated request
(staging/src/k8s.io/apiserver/pkg/endpoints/handlers/responsewriters/errors.go). Tokens are
compared in constant time.

Read-only: only GET routes exist (FastAPI answers other methods 405); nothing here writes to the
cluster or the machine. Bad names in paths get 400 before anything is looked up.

Concurrency: async handlers for the streams (one asyncio queue per page, fed by the hub's render
thread); the trace and pod lookups run subprocesses, so they are plain ``def`` routes that FastAPI
runs in its thread pool.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse

from lab.dashboard.hub import State

STATIC = Path(__file__).with_name("static")
STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css"}
COOKIE = "kubelab-dashboard"
KEEPALIVE = 15.0
# DNS-1123 subdomain: what namespaces, pods and services may be named (validation.IsDNS1123Subdomain)
NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


class Source(Protocol):
    """What the app reads the cluster through (the hub; a fake in unit tests)."""

    state: State | None

    def subscribe(self) -> asyncio.Queue[State]: ...

    def unsubscribe(self, q: asyncio.Queue[State]) -> None: ...


class Inspector(Protocol):
    """The machine side: trace a Service, look at a pod's namespace, follow a log."""

    def trace(self, namespace: str, name: str, port: str) -> dict[str, Any]: ...

    def pod(self, namespace: str, name: str) -> dict[str, Any]: ...

    def logs(self, namespace: str, name: str, container: str) -> AsyncIterator[str]: ...


class DashboardError(Exception):
    """A lookup the user asked for cannot be answered: (HTTP code, message)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def status(code: int, reason: str, message: str) -> JSONResponse:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}  # fmt: skip
    headers = {"WWW-Authenticate": 'Bearer realm="kubelab-dashboard"'} if code == 401 else None
    return JSONResponse(body, status_code=code, headers=headers)


def token_ok(request: Request, token: str) -> bool:
    given = ""
    auth = request.headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        given = auth[7:].strip()
    elif request.cookies.get(COOKIE):
        given = request.cookies[COOKIE]
    return bool(given) and hmac.compare_digest(given.encode(), token.encode())


def check_names(*names: str) -> None:
    for n in names:
        if not NAME.match(n):
            raise DashboardError(400, f"{n!r} is not a valid name (a DNS-1123 subdomain: lower case, digits, '-', '.')")


def sse(event: str, data: Any) -> bytes:
    payload = data if isinstance(data, str) else orjson.dumps(data).decode()
    lines = "".join(f"data: {line}\n" for line in payload.split("\n"))
    return f"event: {event}\n{lines}\n".encode()


def create_app(source: Source, token: str, inspector: Inspector | None = None) -> FastAPI:
    if len(token) < 16:
        raise ValueError("the dashboard token must be at least 16 characters")
    app = FastAPI(title="kubelab dashboard", docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def authenticate(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if path == "/healthz":
            return PlainTextResponse("ok")
        if path == "/" and request.query_params.get("token"):
            given = request.query_params["token"]
            if not hmac.compare_digest(given.encode(), token.encode()):
                return status(401, "Unauthorized", "Unauthorized: the token is wrong (kubelab status prints it)")
            resp = RedirectResponse("/", status_code=303)  # the token leaves the address bar
            resp.set_cookie(COOKIE, token, httponly=True, secure=True, samesite="strict")
            return resp
        if not token_ok(request, token):
            return status(401, "Unauthorized", "Unauthorized: open the URL `kubelab status` prints (it carries "
                                               "the dashboard's token), or send Authorization: Bearer TOKEN")
        response: Response = await call_next(request)
        return response

    @app.exception_handler(DashboardError)
    async def failed(request: Request, exc: DashboardError) -> Response:
        reason = {400: "BadRequest", 404: "NotFound", 503: "ServiceUnavailable"}.get(exc.code, "InternalError")
        return status(exc.code, reason, str(exc))

    @app.get("/")
    def index() -> Response:
        return Response((STATIC / "index.html").read_bytes(), media_type="text/html; charset=utf-8")

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC_FILES:
            return status(404, "NotFound", f"no static file {name!r}")
        return Response((STATIC / name).read_bytes(), media_type=STATIC_FILES[name])

    @app.get("/api/state")
    def state() -> Response:
        st = source.state
        if st is None:
            return status(503, "ServiceUnavailable", "the dashboard has not synced with the API server yet")
        return Response(orjson.dumps(st.as_json()), media_type="application/json")

    @app.get("/api/stream")
    async def stream() -> StreamingResponse:
        async def gen() -> AsyncIterator[bytes]:
            q = source.subscribe()
            try:
                yield b"retry: 1000\n\n"
                while True:
                    try:
                        st = await asyncio.wait_for(q.get(), timeout=KEEPALIVE)
                    except TimeoutError:
                        yield b": keepalive\n\n"
                        continue
                    yield sse("state", st.as_json())
            finally:
                source.unsubscribe(q)

        return StreamingResponse(gen(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    def need_inspector() -> Inspector:
        if inspector is None:
            raise DashboardError(503, "this dashboard runs without the lab's machine view (no trace, no netns)")
        return inspector

    @app.get("/api/trace/{namespace}/{name}")
    def trace(namespace: str, name: str, port: str = "") -> Response:
        check_names(namespace, name)
        if port and not (port.isdigit() or NAME.match(port)):
            raise DashboardError(400, f"port {port!r}: a number or a port name")
        return JSONResponse(need_inspector().trace(namespace, name, port))

    @app.get("/api/pod/{namespace}/{name}")
    def pod(namespace: str, name: str) -> Response:
        check_names(namespace, name)
        return JSONResponse(need_inspector().pod(namespace, name))

    @app.get("/api/logs/{namespace}/{name}")
    async def logs(namespace: str, name: str, container: str = "") -> StreamingResponse:
        check_names(namespace, name, *([container] if container else []))
        lines = need_inspector().logs(namespace, name, container)

        async def gen() -> AsyncIterator[bytes]:
            try:
                async for line in lines:
                    yield sse("line", line)
            except DashboardError as exc:
                yield sse("failure", str(exc))
            yield sse("end", "")

        return StreamingResponse(gen(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    return app
