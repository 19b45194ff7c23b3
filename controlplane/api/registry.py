"""The resource table: every kind kubelab serves, with its group, version, plural and scope.

Role: the single source of truth for URL paths (``/api/v1/namespaces/{ns}/pods``), discovery
documents, storage keys and client calls. Pure data; imported by the server and by every client.

Invariants: ``plural`` is unique within a group; a namespaced resource is addressed as
``{prefix}/namespaces/{ns}/{plural}/{name}``, a cluster-scoped one as ``{prefix}/{plural}/{name}``,
where ``prefix`` is ``/api/v1`` for the core group and ``/apis/{group}/{version}`` otherwise.
Storage keys follow kube-apiserver's: ``/registry/{plural}/{namespace}/{name}`` (namespaced) and
``/registry/{plural}/{name}`` (cluster-scoped), with ``{group}/`` inserted for ambiguous names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

VERBS_ALL = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    group: str  # "" for the core group
    version: str
    kind: str
    plural: str
    singular: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()  # "status", "binding", "scale", "eviction", "log", "exec" …
    verbs: tuple[str, ...] = VERBS_ALL
    # Kinds whose spec changes bump metadata.generation (everything with a spec but pods,
    # whose spec is mostly immutable and which Kubernetes also does not version).
    has_generation: bool = True
    extra: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    def collection_path(self, namespace: str | None = None) -> str:
        """``…/namespaces/{ns}/pods`` or, for all namespaces / cluster scope, ``…/pods``."""
        if self.namespaced and namespace:
            return f"{self.prefix}/namespaces/{namespace}/{self.plural}"
        return f"{self.prefix}/{self.plural}"

    def item_path(self, name: str, namespace: str | None = None, subresource: str | None = None) -> str:
        if self.namespaced and not namespace:
            raise ValueError(f"{self.plural} are namespaced: a namespace is required")
        path = f"{self.collection_path(namespace)}/{name}"
        return f"{path}/{subresource}" if subresource else path

    def storage_prefix(self, namespace: str | None = None) -> str:
        base = f"/registry/{self.storage_name}/"
        return f"{base}{namespace}/" if self.namespaced and namespace else base

    def storage_key(self, name: str, namespace: str | None = None) -> str:
        if self.namespaced:
            return f"/registry/{self.storage_name}/{namespace}/{name}"
        return f"/registry/{self.storage_name}/{name}"

    @property
    def storage_name(self) -> str:
        # events and endpointslices live under their group to keep keys unambiguous
        return f"{self.group}/{self.plural}" if self.group and self.group not in ("apps", "batch") else self.plural


RBAC_GROUP = "rbac.authorization.k8s.io"


def _r(group: str, kind: str, plural: str, namespaced: bool = True, **kw: object) -> Resource:
    return Resource(
        group=group,
        version="v1",
        kind=kind,
        plural=plural,
        singular=kind.lower(),
        namespaced=namespaced,
        **kw,  # type: ignore[arg-type]
    )


RESOURCES: tuple[Resource, ...] = (
    _r(
        "",
        "Namespace",
        "namespaces",
        namespaced=False,
        short_names=("ns",),
        subresources=("status", "finalize"),
        # Kubernetes has no deletecollection for namespaces (so no "DELETE /api/v1/namespaces").
        verbs=("create", "delete", "get", "list", "patch", "update", "watch"),
        has_generation=False,
    ),
    _r(
        "",
        "Pod",
        "pods",
        short_names=("po",),
        categories=("all",),
        subresources=("status", "binding", "eviction", "log", "exec", "attach", "portforward"),
        has_generation=False,
    ),
    _r(
        "",
        "Service",
        "services",
        short_names=("svc",),
        categories=("all",),
        subresources=("status",),
        has_generation=False,
    ),
    _r("", "Endpoints", "endpoints", short_names=("ep",), has_generation=False),
    _r(
        "",
        "Node",
        "nodes",
        namespaced=False,
        short_names=("no",),
        subresources=("status",),
        has_generation=False,
    ),
    _r(
        "",
        "ReplicationController",
        "replicationcontrollers",
        short_names=("rc",),
        categories=("all",),
        subresources=("status", "scale"),
    ),
    # computed on each request (controlplane.apiserver.componentstatus), never stored
    _r(
        "",
        "ComponentStatus",
        "componentstatuses",
        namespaced=False,
        short_names=("cs",),
        verbs=("get", "list"),
        has_generation=False,
    ),
    _r("", "Event", "events", short_names=("ev",), has_generation=False),
    _r("", "ConfigMap", "configmaps", short_names=("cm",), has_generation=False),
    _r("", "Secret", "secrets", has_generation=False),
    _r(
        "",
        "ServiceAccount",
        "serviceaccounts",
        short_names=("sa",),
        subresources=("token",),
        has_generation=False,
    ),
    _r(
        "apps",
        "Deployment",
        "deployments",
        short_names=("deploy",),
        categories=("all",),
        subresources=("status", "scale"),
    ),
    _r(
        "apps",
        "ReplicaSet",
        "replicasets",
        short_names=("rs",),
        categories=("all",),
        subresources=("status", "scale"),
    ),
    _r("apps", "DaemonSet", "daemonsets", short_names=("ds",), categories=("all",), subresources=("status",)),
    _r(
        "apps",
        "StatefulSet",
        "statefulsets",
        short_names=("sts",),
        categories=("all",),
        subresources=("status", "scale"),
    ),
    _r("apps", "ControllerRevision", "controllerrevisions", has_generation=False),
    _r("batch", "Job", "jobs", categories=("all",), subresources=("status",)),
    _r("batch", "CronJob", "cronjobs", short_names=("cj",), categories=("all",), subresources=("status",)),
    _r("coordination.k8s.io", "Lease", "leases", has_generation=False),
    _r("discovery.k8s.io", "EndpointSlice", "endpointslices", has_generation=False),
    _r("networking.k8s.io", "NetworkPolicy", "networkpolicies", short_names=("netpol",)),
    # RBAC (rbac.authorization.k8s.io/v1): stored like every kind; no generation, as Kubernetes.
    _r(RBAC_GROUP, "Role", "roles", has_generation=False),
    _r(RBAC_GROUP, "RoleBinding", "rolebindings", has_generation=False),
    _r(RBAC_GROUP, "ClusterRole", "clusterroles", namespaced=False, has_generation=False),
    _r(RBAC_GROUP, "ClusterRoleBinding", "clusterrolebindings", namespaced=False, has_generation=False),
    # Reviews: create-only, never stored (the server answers them; see apiserver/authz/reviews.py).
    _r("authorization.k8s.io", "SelfSubjectAccessReview", "selfsubjectaccessreviews", False, verbs=("create",)),
    _r("authorization.k8s.io", "SelfSubjectRulesReview", "selfsubjectrulesreviews", False, verbs=("create",)),
    _r("authorization.k8s.io", "SubjectAccessReview", "subjectaccessreviews", False, verbs=("create",)),
    _r("authorization.k8s.io", "LocalSubjectAccessReview", "localsubjectaccessreviews", verbs=("create",)),
    _r("authentication.k8s.io", "SelfSubjectReview", "selfsubjectreviews", False, verbs=("create",)),
    _r("authentication.k8s.io", "TokenReview", "tokenreviews", False, verbs=("create",)),
    _r("apiregistration.k8s.io", "APIService", "apiservices", namespaced=False, subresources=("status",)),
    _r("", "ResourceQuota", "resourcequotas", short_names=("quota",), subresources=("status",), has_generation=False),
    _r("", "LimitRange", "limitranges", short_names=("limits",), has_generation=False),
    _r("policy", "PodDisruptionBudget", "poddisruptionbudgets", short_names=("pdb",), subresources=("status",)),
    _r(
        "scheduling.k8s.io",
        "PriorityClass",
        "priorityclasses",
        namespaced=False,
        short_names=("pc",),
        has_generation=False,
    ),
    _r("networking.k8s.io", "Ingress", "ingresses", short_names=("ing",), subresources=("status",)),
    _r("networking.k8s.io", "IngressClass", "ingressclasses", namespaced=False),
)

_BY_PATH: dict[tuple[str, str, str], Resource] = {(r.group, r.version, r.plural): r for r in RESOURCES}
_BY_KIND: dict[tuple[str, str], Resource] = {(r.api_version, r.kind): r for r in RESOURCES}


def lookup(group: str, version: str, plural: str) -> Resource | None:
    """The resource served at ``/api[s]/{group}/{version}/{plural}``, or None."""
    return _BY_PATH.get((group, version, plural))


def for_kind(api_version: str, kind: str) -> Resource | None:
    """The resource for an object's ``apiVersion`` and ``kind``, or None."""
    return _BY_KIND.get((api_version, kind))


def groups() -> list[tuple[str, str]]:
    """(group, version) pairs in discovery order, the core group first."""
    seen: list[tuple[str, str]] = []
    for r in RESOURCES:
        if (r.group, r.version) not in seen:
            seen.append((r.group, r.version))
    return seen


# Handy constants for clients: ``registry.PODS.item_path("web-1", "default")``.
NAMESPACES = _BY_PATH[("", "v1", "namespaces")]
PODS = _BY_PATH[("", "v1", "pods")]
SERVICES = _BY_PATH[("", "v1", "services")]
ENDPOINTS = _BY_PATH[("", "v1", "endpoints")]
NODES = _BY_PATH[("", "v1", "nodes")]
EVENTS = _BY_PATH[("", "v1", "events")]
CONFIGMAPS = _BY_PATH[("", "v1", "configmaps")]
SECRETS = _BY_PATH[("", "v1", "secrets")]
SERVICEACCOUNTS = _BY_PATH[("", "v1", "serviceaccounts")]
DEPLOYMENTS = _BY_PATH[("apps", "v1", "deployments")]
REPLICASETS = _BY_PATH[("apps", "v1", "replicasets")]
DAEMONSETS = _BY_PATH[("apps", "v1", "daemonsets")]
STATEFULSETS = _BY_PATH[("apps", "v1", "statefulsets")]
CONTROLLERREVISIONS = _BY_PATH[("apps", "v1", "controllerrevisions")]
JOBS = _BY_PATH[("batch", "v1", "jobs")]
CRONJOBS = _BY_PATH[("batch", "v1", "cronjobs")]
REPLICATIONCONTROLLERS = _BY_PATH[("", "v1", "replicationcontrollers")]
COMPONENTSTATUSES = _BY_PATH[("", "v1", "componentstatuses")]
LEASES = _BY_PATH[("coordination.k8s.io", "v1", "leases")]
ENDPOINTSLICES = _BY_PATH[("discovery.k8s.io", "v1", "endpointslices")]
NETWORKPOLICIES = _BY_PATH[("networking.k8s.io", "v1", "networkpolicies")]
ROLES = _BY_PATH[(RBAC_GROUP, "v1", "roles")]
ROLEBINDINGS = _BY_PATH[(RBAC_GROUP, "v1", "rolebindings")]
CLUSTERROLES = _BY_PATH[(RBAC_GROUP, "v1", "clusterroles")]
CLUSTERROLEBINDINGS = _BY_PATH[(RBAC_GROUP, "v1", "clusterrolebindings")]
# Kinds answered by the server without storage (create-only reviews).
REVIEWS = frozenset(r for r in RESOURCES if r.group in ("authorization.k8s.io", "authentication.k8s.io"))
APISERVICES = _BY_PATH[("apiregistration.k8s.io", "v1", "apiservices")]
RESOURCEQUOTAS = _BY_PATH[("", "v1", "resourcequotas")]
LIMITRANGES = _BY_PATH[("", "v1", "limitranges")]
PODDISRUPTIONBUDGETS = _BY_PATH[("policy", "v1", "poddisruptionbudgets")]
PRIORITYCLASSES = _BY_PATH[("scheduling.k8s.io", "v1", "priorityclasses")]
INGRESSES = _BY_PATH[("networking.k8s.io", "v1", "ingresses")]
INGRESSCLASSES = _BY_PATH[("networking.k8s.io", "v1", "ingressclasses")]
