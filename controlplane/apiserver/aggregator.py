"""The aggregation layer: APIService availability, discovery of aggregated groups, and the proxy to them.

Role (kube-aggregator inside kube-apiserver, ``staging/src/k8s.io/kube-aggregator``):
- the **availability controller** (``pkg/controllers/status/remote``'s AvailableConditionController)
  keeps each APIService's ``Available`` condition: ``Local`` when it has no service; else the
  Service must exist and listen on ``spec.service.port`` (``ServiceNotFound``, ``ServicePortError``),
  its Endpoints must have an address for that port (``EndpointsNotFound``, ``MissingEndpoints``),
  and a GET of ``/apis/<group>/<version>`` on the endpoint, with the front-proxy client certificate,
  must answer 2xx within 5 s (``FailedDiscoveryCheck``); then ``Passed``. It re-checks every
  ``interval`` seconds (kube: on every change plus a 30 s resync) and writes ``status`` only on change;
- the **proxy** (``pkg/apiserver/handler_proxy.go``): a request under ``/apis/<group>/<version>`` of a
  remote APIService is authenticated and authorized here first, then forwarded to the service's
  endpoint (kube-apiserver's ``--enable-aggregator-routing=true`` behaviour: straight to the endpoint
  IP, so no kube-proxy is needed beside the API server) over TLS checked against ``caBundle``
  (unless ``insecureSkipTLSVerify``), presenting ``front-proxy-client``, with the user in
  ``X-Remote-User``/``X-Remote-Group``/``X-Remote-Extra-<key>`` and the client's own credentials
  removed. An APIService that is not Available answers 503 ``service unavailable``;
- **discovery**: ``/apis`` (legacy and aggregated) lists available remote groups, with the resources
  their backend's ``APIResourceList`` named at the last check; ``/apis/<group>`` is answered here.

Concurrency: one asyncio task (the controller) and the request handlers share ``self.remote``
(replaced whole, never mutated in place), all on the server's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from controlplane.api import errors, registry
from controlplane.api.meta import now_rfc3339
from controlplane.apiserver import discovery
from controlplane.apiserver.auth import RequestAttributes
from controlplane.apiserver.httpio import JSON, send_json
from controlplane.storage.interface import StoreUnavailableError

log = logging.getLogger(__name__)
# httpx logs every request at INFO: one line per APIService every few seconds is noise in the server log.
logging.getLogger("httpx").setLevel(logging.WARNING)

APISERVICES = registry.lookup("apiregistration.k8s.io", "v1", "apiservices")
CHECK_TIMEOUT = 5.0
_STRIP = ("authorization", "impersonate-", "x-remote-", "host", "connection", "content-length", "transfer-encoding")
Obj = dict[str, Any]


@dataclass
class Remote:
    """An available remote group/version and the backend it lives at."""

    name: str
    group: str
    version: str
    url: str  # https://ip:port
    verify: ssl.SSLContext | bool
    resources: list[Obj] = field(default_factory=list)  # from the backend's APIResourceList


def condition(status: str, reason: str, message: str) -> Obj:
    return {"type": "Available", "status": status, "reason": reason, "message": message}


def resolve(apisvc: Obj, svc: Obj | None, eps: Obj | None) -> tuple[Obj, str | None]:
    """The Available condition before the discovery check, and the endpoint URL if one was found.

    Pure: the same checks, reasons and messages as AvailableConditionController.sync.
    """
    ref = (apisvc.get("spec") or {}).get("service")
    if not ref:
        return condition("True", "Local", "Local APIServices are always available"), None
    ns, name, port = ref.get("namespace", ""), ref.get("name", ""), int(ref.get("port") or 443)
    if svc is None:
        return condition("False", "ServiceNotFound", f'service/{name} in "{ns}" is not present'), None
    sp = next((p for p in (svc.get("spec") or {}).get("ports") or [] if int(p.get("port", 0)) == port), None)
    if sp is None:
        return condition("False", "ServicePortError", f'service/{name} in "{ns}" is not listening on port {port}'), None
    if eps is None:
        return condition("False", "EndpointsNotFound", f'cannot find endpoints for service/{name} in "{ns}"'), None
    port_name = sp.get("name", "")
    for subset in eps.get("subsets") or []:
        ports = [p for p in subset.get("ports") or [] if p.get("name", "") == port_name]
        addrs = subset.get("addresses") or []
        if ports and addrs:
            return condition("True", "Passed", "all checks passed"), f"https://{addrs[0]['ip']}:{ports[0]['port']}"
    msg = f'endpoints for service/{name} in "{ns}" have no addresses with port name "{port_name}"'
    return condition("False", "MissingEndpoints", msg), None


def set_condition(apisvc: Obj, cond: Obj, now: str) -> bool:
    """Put ``cond`` into ``status.conditions``; True when something changed (lastTransitionTime kept otherwise)."""
    conds = apisvc.setdefault("status", {}).setdefault("conditions", [])
    old = next((c for c in conds if c.get("type") == "Available"), None)
    if old and all(old.get(k) == cond[k] for k in ("status", "reason", "message")):
        return False
    new = {
        **cond,
        "lastTransitionTime": now if not old or old.get("status") != cond["status"] else old["lastTransitionTime"],
    }
    apisvc["status"]["conditions"] = [c for c in conds if c.get("type") != "Available"] + [new]
    return True


def tls_for(apisvc: Obj) -> ssl.SSLContext | bool:
    spec = apisvc.get("spec") or {}
    if spec.get("insecureSkipTLSVerify"):
        return False
    import base64

    ca = base64.b64decode(spec.get("caBundle") or "").decode() or None
    return ssl.create_default_context(cadata=ca) if ca else ssl.create_default_context()


def request_attributes(method: str, segments: list[str], query: dict[str, list[str]]) -> RequestAttributes:
    """Authorizer attributes for ``/apis/<g>/<v>/...`` (RequestInfoFactory's reading of the path)."""
    group, rest = segments[1], segments[3:]
    path = "/" + "/".join(segments)
    if not rest:
        return RequestAttributes(verb=method.lower(), path=path, resource_request=False)
    ns = ""
    if rest[0] == "namespaces" and len(rest) >= 3:
        ns, rest = rest[1], rest[2:]
    resource, name = rest[0], rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    verbs = {"GET": "get" if name else "list", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    verb = verbs.get(method, method.lower())
    if verb == "list" and query.get("watch", [""])[-1] in ("1", "true"):
        verb = "watch"
    return RequestAttributes(verb, group, resource, sub, ns, name, path)


class Aggregator:
    """Held by the ``ApiServer`` over its ``RequestScope`` (``server``: options, ops, run, authorize);
    ``handle`` is its one hook in the request path (``routes.Router.dispatch``)."""

    def __init__(self, server: Any, interval: float = 5.0) -> None:
        self.server = server
        self.interval = interval
        self.remote: dict[tuple[str, str], Remote] = {}
        self.unavailable: dict[tuple[str, str], str] = {}  # (group, version) → APIService name
        extra = server.options.extra
        cert = (extra["proxy_client_cert"], extra["proxy_client_key"]) if "proxy_client_cert" in extra else None
        self.cert = cert
        self._clients: dict[int, httpx.AsyncClient] = {}
        self.task: asyncio.Future[None] | None = None
        self._registered = False

    def start(self) -> Aggregator:
        self.task = asyncio.ensure_future(self._loop())
        return self

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        for c in self._clients.values():
            await c.aclose()

    def _client(self, verify: ssl.SSLContext | bool) -> httpx.AsyncClient:
        key = id(verify) if not isinstance(verify, bool) else int(verify)
        c = self._clients.get(key)
        if c is None:
            ctx = verify if not isinstance(verify, bool) else ssl.create_default_context()
            if verify is False:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            if self.cert:
                ctx.load_cert_chain(*self.cert)
            c = self._clients[key] = httpx.AsyncClient(verify=ctx, timeout=httpx.Timeout(CHECK_TIMEOUT, read=None))
        return c

    # -- the availability controller ---------------------------------------------------------

    async def _loop(self) -> None:
        while True:
            try:
                await self.sync_all()
            except StoreUnavailableError as exc:  # etcd without quorum: said once a round, no traceback
                log.warning("APIService availability check skipped: %s", exc)
            except Exception:
                log.exception("APIService availability check failed")
            await asyncio.sleep(self.interval)

    async def _get(self, res: registry.Resource, ns: str | None, name: str) -> Obj | None:
        try:
            obj: Obj = await self.server.run(self.server.ops.get, res, ns, name)
            return obj
        except errors.NotFound:
            return None

    def autoregister(self) -> None:
        """Local APIServices for every built-in group/version (kube-aggregator's autoregister
        controller): ``v1.`` for the core group, ``v1.apps`` …, so ``kubectl get apiservices`` lists
        them as it does on kube-apiserver. Existing ones are left alone."""
        assert APISERVICES is not None
        for i, (group, version) in enumerate(registry.groups()):
            obj = {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {
                    "name": f"{version}.{group}",
                    "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"},
                },
                "spec": {
                    "group": group,
                    "version": version,
                    "groupPriorityMinimum": 18000 - 100 * i,
                    "versionPriority": 15,
                },
            }
            try:
                self.server.ops.create(APISERVICES, None, obj)
            except errors.AlreadyExists:
                pass

    async def sync_all(self) -> None:
        assert APISERVICES is not None
        if not self._registered:
            await self.server.run(self.autoregister)
            self._registered = True
        items, _rv = await self.server.run(self.server.ops.list, APISERVICES, None, None)
        remote: dict[tuple[str, str], Remote] = {}
        unavailable: dict[tuple[str, str], str] = {}
        for apisvc in items:
            spec = apisvc.get("spec") or {}
            gv = (spec.get("group", ""), spec.get("version", ""))
            ref = spec.get("service")
            cond, url, resources = await self.check(apisvc, ref)
            if ref:
                unavailable[gv] = apisvc["metadata"]["name"]
            if url is not None and cond["status"] == "True":
                remote[gv] = Remote(apisvc["metadata"]["name"], gv[0], gv[1], url, tls_for(apisvc), resources)
            if set_condition(apisvc, cond, now_rfc3339()):
                try:
                    name = apisvc["metadata"]["name"]
                    await self.server.run(
                        lambda n=name, o=apisvc: self.server.ops.update(APISERVICES, None, n, o, subresource="status")
                    )
                except errors.ApiError as e:
                    log.info("APIService %s status not written (%s); next round retries", apisvc["metadata"]["name"], e)
        self.remote = remote
        self.unavailable = {k: v for k, v in unavailable.items() if k not in remote}

    async def check(self, apisvc: Obj, ref: Obj | None) -> tuple[Obj, str | None, list[Obj]]:
        """The Available condition, the endpoint URL and the backend's resources (from its discovery)."""
        if not ref:
            return (*resolve(apisvc, None, None), [])
        ns, name = ref.get("namespace", ""), ref.get("name", "")
        svc = await self._get(registry.SERVICES, ns, name)
        eps = await self._get(registry.ENDPOINTS, ns, name) if svc is not None else None
        cond, url = resolve(apisvc, svc, eps)
        if url is None:
            return cond, None, []
        spec = apisvc["spec"]
        disc = f"{url}/apis/{spec['group']}/{spec['version']}"
        try:
            # As the controller does: the front-proxy identity system:kube-aggregator in system:masters.
            hdrs = [("X-Remote-User", "system:kube-aggregator"), ("X-Remote-Group", "system:masters")]
            resp = await self._client(tls_for(apisvc)).get(disc, headers=hdrs, timeout=CHECK_TIMEOUT)
        except (httpx.HTTPError, ssl.SSLError, OSError) as e:
            return condition("False", "FailedDiscoveryCheck", f"failing or missing response from {disc}: {e}"), None, []
        if not 200 <= resp.status_code < 300:
            return condition("False", "FailedDiscoveryCheck", f"bad status from {disc}: {resp.status_code}"), None, []
        try:
            resources = list(orjson.loads(resp.content).get("resources") or [])
        except (orjson.JSONDecodeError, AttributeError):
            resources = []
        return cond, url, resources

    # -- the request path ----------------------------------------------------------------------

    async def handle(self, req: Any, path: str, send: Any) -> bool:
        """Serve ``req`` if it is aggregation's (discovery additions, proxied groups); else False."""
        if not self.remote and not self.unavailable:
            return False
        if path == "/apis":
            await self._discovery(req, send)
            return True
        seg = [urllib.parse.unquote(s) for s in path.strip("/").split("/")]
        if seg[0] != "apis" or len(seg) < 2 or any(g == seg[1] for g, _ in registry.groups()):
            return False
        versions = [r for (g, _v), r in self.remote.items() if g == seg[1]]
        down = [n for (g, _v), n in self.unavailable.items() if g == seg[1]]
        if not versions and not down:
            return False
        if len(seg) == 2:
            gvs = [{"groupVersion": f"{r.group}/{r.version}", "version": r.version} for r in versions]
            if not gvs:
                raise errors.NotFound("the server could not find the requested resource")
            doc = {"kind": "APIGroup", "apiVersion": "v1", "name": seg[1], "versions": gvs, "preferredVersion": gvs[0]}
            await send_json(send, 200, doc)
            return True
        remote = self.remote.get((seg[1], seg[2]))
        if remote is None:
            if (seg[1], seg[2]) in self.unavailable:
                raise errors.ServiceUnavailable("service unavailable")
            return False
        self.server.authorize(req, request_attributes(req.method, seg, req.query))
        await self._proxy(req, remote, send)
        return True

    async def _discovery(self, req: Any, send: Any) -> None:
        agg = discovery.negotiate_aggregated(req.headers.get("accept", ""))
        if agg is None:
            doc = discovery.api_group_list()
            for r in self.remote.values():
                gv = {"groupVersion": f"{r.group}/{r.version}", "version": r.version}
                doc["groups"].append({"name": r.group, "versions": [gv], "preferredVersion": gv})
            await send_json(send, 200, doc)
            return
        version = "apidiscovery.k8s.io/v2" if agg == discovery.AGG_V2 else "apidiscovery.k8s.io/v2beta1"
        doc = discovery.aggregated(False, version)
        for r in self.remote.values():
            resources = [
                {
                    "resource": x["name"],
                    "responseKind": {"group": r.group, "version": r.version, "kind": x.get("kind", "")},
                    "scope": "Namespaced" if x.get("namespaced") else "Cluster",
                    "singularResource": x.get("singularName") or x["name"],
                    "verbs": x.get("verbs", []),
                }
                for x in r.resources
                if "/" not in x.get("name", "")
            ]
            doc["items"].append(
                {
                    "metadata": {"name": r.group, "creationTimestamp": None},
                    "versions": [{"version": r.version, "resources": resources, "freshness": "Current"}],
                }
            )
        await send_json(send, 200, doc, agg)

    async def _proxy(self, req: Any, remote: Remote, send: Any) -> None:
        user = req.user
        headers: list[tuple[str, str]] = [(k, v) for k, v in req.headers.items() if not k.startswith(_STRIP)]
        headers.append(("X-Remote-User", user.name))
        headers += [("X-Remote-Group", g) for g in user.groups]
        for k, v in (user.extra or {}).items():
            for val in v if isinstance(v, list | tuple) else [v]:
                headers.append((f"X-Remote-Extra-{urllib.parse.quote(k, safe='')}", str(val)))
        body = await req.body(self.server.options.max_body_bytes) if req.method in ("POST", "PUT", "PATCH") else None
        qs = req.scope.get("query_string", b"").decode("latin-1")
        url = f"{remote.url}{req.path}" + (f"?{qs}" if qs else "")
        client = self._client(remote.verify)
        try:
            async with client.stream(req.method, url, headers=headers, content=body) as resp:
                out = [
                    (k.encode(), v.encode())
                    for k, v in resp.headers.items()
                    if k.lower() in ("content-type", "cache-control")
                ]
                await send({"type": "http.response.start", "status": resp.status_code, "headers": out})
                async for chunk in resp.aiter_raw():
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
        except (httpx.HTTPError, ssl.SSLError, OSError) as e:
            log.warning("proxying %s to %s failed: %s", req.path, remote.url, e)
            raise errors.ServiceUnavailable(f"error trying to reach service: {e}") from None


__all__ = ["JSON", "Aggregator", "condition", "request_attributes", "resolve", "set_condition"]
