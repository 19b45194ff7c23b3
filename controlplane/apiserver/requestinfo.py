"""What a request asks for: its path parsed into a ``RequestInfo``, and the API verb of its method.

Role: kube-apiserver's ``RequestInfoFactory`` (k8s.io/apiserver/pkg/endpoints/request/requestinfo.go)
in small. ``parse_resource_path`` turns ``/api/v1/namespaces/default/pods/web/status`` into the
resource (group, version, plural from the registry), namespace, name and subresource;
``request_verb`` maps the HTTP method on that path to the API verb (``list``, ``watch``, ``get``,
``create``, ``update``, ``patch``, ``delete``, ``deletecollection``) that authorization checks and
the router dispatches on (``routes.py``).

Invariants:
- A path the registry does not know, or whose shape does not fit its resource (a namespace on a
  cluster-scoped kind, a name without a namespace on a namespaced kind, an unknown subresource),
  parses to None: the router answers 404.
- The verbs a path accepts are exactly those discovery publishes for it (one table:
  ``Resource.verbs`` and the subresource verbs); any other method gives None, answered 405.

Concurrency: pure functions over immutable registry data; safe from any thread.
"""

from __future__ import annotations

from controlplane.api import registry
from controlplane.api.registry import Resource
from controlplane.apiserver import discovery

# ``/api/v1/namespaces/{name}/status|finalize`` are subresources of a Namespace, not a namespace prefix.
_NS_SUBRESOURCES = ("status", "finalize")

# HTTP method → API verb, on a collection path and on an object path (kube-apiserver's
# RequestInfoFactory, k8s.io/apiserver/pkg/endpoints/request/requestinfo.go). Which of those verbs
# a path then accepts comes from one table only: the resource's discovery ``verbs``
# (``registry.Resource.verbs``) and the subresource verbs discovery publishes.
_COLLECTION_VERBS = {"GET": "list", "POST": "create", "DELETE": "deletecollection"}
_OBJECT_VERBS = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "POST": "create"}
# Subresources served over a streaming connection: kube-apiserver authorizes both GET and POST
# of exec/attach/portforward as "create" (they are connect verbs).
CONNECT = ("exec", "attach", "portforward")
# What an all-namespaces path (``/api/v1/pods`` for a namespaced kind) accepts: reads only.
# kube-apiserver registers create and deletecollection only under ``/namespaces/{ns}/``, so
# ``DELETE /api/v1/configmaps`` is a 405 there, never "every ConfigMap in every namespace".
_ALL_NAMESPACES_VERBS = ("list", "watch")
# Subresources this server implements (discovery lists no more than these).
SERVED_SUBRESOURCES = ("status", "scale", "binding", "eviction", "log", "finalize", "token", *CONNECT)


class RequestInfo:
    """A parsed resource path: the resource (group, version, plural), namespace, name, subresource."""

    __slots__ = ("name", "namespace", "res", "subresource")

    def __init__(self, res: Resource, namespace: str | None, name: str | None, subresource: str | None) -> None:
        self.res = res
        self.namespace = namespace
        self.name = name
        self.subresource = subresource

    @property
    def group(self) -> str:
        return self.res.group

    @property
    def version(self) -> str:
        return self.res.version

    @property
    def resource(self) -> str:
        return self.res.plural


def request_verb(info: RequestInfo, method: str, watch: bool) -> str | None:
    """The API verb of ``method`` on ``info``'s path, or None when Kubernetes does not serve it there (405)."""
    res, sub = info.res, info.subresource
    if info.name is None:
        verb = _COLLECTION_VERBS.get(method)
        if verb == "list" and watch:
            verb = "watch"
        if res.namespaced and info.namespace is None and verb not in _ALL_NAMESPACES_VERBS:
            return None
        return verb if verb in res.verbs else None
    if sub is None:
        verb = _OBJECT_VERBS.get(method)
        return verb if verb in res.verbs and verb != "create" else None
    if sub in CONNECT:
        return "create" if method in ("GET", "POST") else None
    verb = _OBJECT_VERBS.get(method)
    return verb if verb in discovery.subresource_verbs(sub) and sub in SERVED_SUBRESOURCES else None


def is_resource_path(segments: list[str]) -> bool:
    """``/api/<version>/…`` or ``/apis/<group>/<version>/…``: long enough to name a resource."""
    return (segments[0] == "api" and len(segments) >= 3) or (segments[0] == "apis" and len(segments) >= 4)


def parse_resource_path(segments: list[str]) -> RequestInfo | None:
    """``["api","v1","namespaces","default","pods","web"]`` → RequestInfo; None when not a resource path."""
    if not segments:
        return None
    if segments[0] == "api" and len(segments) >= 3:
        group, version, rest = "", segments[1], segments[2:]
    elif segments[0] == "apis" and len(segments) >= 4:
        group, version, rest = segments[1], segments[2], segments[3:]
    else:
        return None
    namespace: str | None = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in _NS_SUBRESOURCES:
        namespace = rest[1]
        rest = rest[2:]
    if len(rest) > 3 or not all(rest):
        return None
    res = registry.lookup(group, version, rest[0])
    if res is None:
        return None
    name = rest[1] if len(rest) >= 2 else None
    sub = rest[2] if len(rest) == 3 else None
    if namespace is not None and not res.namespaced:
        return None
    if res.namespaced and name is not None and namespace is None:
        return None
    if sub is not None and sub not in res.subresources:
        return None
    return RequestInfo(res, namespace, name, sub)
