"""Kubernetes' bootstrap RBAC policy, and its reconciliation at API server start.

Role: the ClusterRoles and ClusterRoleBindings kube-apiserver creates at start
(``plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go`` and ``controller_policy.go``), as
data: ``cluster-admin`` (bound to ``system:masters``), the aggregated ``admin``/``edit``/``view``
and their ``system:aggregate-to-*`` parts, ``system:basic-user``, ``system:discovery``,
``system:public-info-viewer``, the component roles ``system:kube-scheduler``,
``system:kube-controller-manager``, ``system:node-proxier`` (user ``system:kube-proxy``),
``system:node`` (used by the Node authorizer, bound to nobody), the ``system:controller:*`` roles
of the controllers kubelab runs, ``system:metrics-server`` (with what our metrics server registers),
``system:auth-delegator`` (bound to the proxy and the network agent for their authenticated debug
endpoints), and four of our own: ``system:kubelab-dashboard``, ``system:kubelab-dns``,
``system:kubelab-netagent`` (exactly what ``controlplane/dns`` and ``netplugin/agent.py`` +
``netplugin/policy`` read and write) and ``system:kubelab-node-debug`` (``get`` on the node
components' debug paths, bound to nobody).

Our controller-manager runs every controller under one identity,
``system:kube-controller-manager`` (kube-controller-manager without
``--use-service-account-credentials``). Kubernetes binds each ``system:controller:<name>`` role to
the ServiceAccount ``kube-system/<name>``; we keep those bindings and add the user
``system:kube-controller-manager`` as a second subject of the ones whose controllers we run, so
that identity holds exactly the union of those roles (no bespoke union role).

``reconcile(ops)`` does what kube-apiserver's ``rbac/bootstrap-roles`` post-start hook does: create
what is missing; for an existing object annotated ``rbac.authorization.kubernetes.io/autoupdate:
"true"``, add back missing rules/subjects and labels while keeping anything extra. The aggregated
roles get their rules filled here once (the union of the roles their selectors match), so a server
running without the aggregation controller still has working ``view``/``edit``/``admin``; the
controller (``controllers/clusterroleaggregation.py``) keeps them current afterwards.

Pure data plus one synchronous function; run on a store thread.

Kept over 100 lines: ``_component_roles`` and ``controller_roles`` are policy tables (one entry per
role, as bootstrappolicy's Go tables), read and extended entry by entry; splitting them would scatter
one table.
"""

from __future__ import annotations

import logging
from typing import Any

from controlplane.api import errors, registry
from controlplane.api.rbac import aggregate_rules

log = logging.getLogger(__name__)

Obj = dict[str, Any]
AUTOUPDATE = "rbac.authorization.kubernetes.io/autoupdate"
BOOTSTRAP_LABEL = {"kubernetes.io/bootstrapping": "rbac-defaults"}
AGG = "rbac.authorization.k8s.io/aggregate-to-"

READ = ("get", "list", "watch")
WRITE = ("create", "delete", "deletecollection", "patch", "update")


def rule(
    verbs: tuple[str, ...], groups: tuple[str, ...], resources: tuple[str, ...], names: tuple[str, ...] = ()
) -> Obj:
    r: Obj = {"verbs": list(verbs), "apiGroups": list(groups), "resources": list(resources)}
    if names:
        r["resourceNames"] = list(names)
    return r


def urls(verbs: tuple[str, ...], paths: tuple[str, ...]) -> Obj:
    return {"verbs": list(verbs), "nonResourceURLs": list(paths)}


def events_rule() -> Obj:
    return rule(("create", "update", "patch"), ("", "events.k8s.io"), ("events",))


def _role(name: str, rules: list[Obj], labels: dict[str, str] | None = None, agg: str | None = None) -> Obj:
    md: Obj = {"name": name, "labels": {**BOOTSTRAP_LABEL, **(labels or {})}, "annotations": {AUTOUPDATE: "true"}}
    obj: Obj = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": md, "rules": rules}
    if agg is not None:
        obj["aggregationRule"] = {"clusterRoleSelectors": [{"matchLabels": {AGG + agg: "true"}}]}
    return obj


def _subject(kind: str, name: str, namespace: str = "") -> Obj:
    if kind == "ServiceAccount":
        return {"kind": kind, "name": name, "namespace": namespace}
    return {"kind": kind, "apiGroup": registry.RBAC_GROUP, "name": name}


def _binding(name: str, role: str, subjects: list[Obj]) -> Obj:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": name, "labels": dict(BOOTSTRAP_LABEL), "annotations": {AUTOUPDATE: "true"}},
        "roleRef": {"apiGroup": registry.RBAC_GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects,
    }


_DISCOVERY_URLS = ("/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz")
_PUBLIC_URLS = ("/healthz", "/livez", "/readyz", "/version", "/version/")


def _view_rules() -> list[Obj]:
    return [
        rule(
            READ,
            ("",),
            (
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
            ),
        ),
        rule(
            READ,
            ("",),
            (
                "bindings",
                "events",
                "limitranges",
                "namespaces/status",
                "pods/log",
                "pods/status",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
            ),
        ),
        rule(READ, ("",), ("namespaces",)),
        rule(READ, ("discovery.k8s.io",), ("endpointslices",)),
        rule(
            READ,
            ("apps",),
            (
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ),
        ),
        rule(READ, ("autoscaling",), ("horizontalpodautoscalers", "horizontalpodautoscalers/status")),
        rule(READ, ("batch",), ("cronjobs", "cronjobs/status", "jobs", "jobs/status")),
        rule(READ, ("policy",), ("poddisruptionbudgets", "poddisruptionbudgets/status")),
        rule(READ, ("networking.k8s.io",), ("ingresses", "ingresses/status", "networkpolicies")),
    ]


def _edit_rules() -> list[Obj]:
    return [
        rule(READ, ("",), ("pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy")),
        rule(("impersonate",), ("",), ("serviceaccounts",)),
        rule(WRITE, ("",), ("pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy")),
        rule(("create",), ("",), ("pods/eviction",)),
        rule(
            WRITE,
            ("",),
            (
                "configmaps",
                "events",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ),
        ),
        rule(("create",), ("",), ("serviceaccounts/token",)),
        rule(
            WRITE,
            ("apps",),
            (
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ),
        ),
        rule(WRITE, ("autoscaling",), ("horizontalpodautoscalers",)),
        rule(WRITE, ("batch",), ("cronjobs", "jobs")),
        rule(WRITE, ("policy",), ("poddisruptionbudgets",)),
        rule(WRITE, ("networking.k8s.io",), ("ingresses", "networkpolicies")),
        rule(WRITE, ("coordination.k8s.io",), ("leases",)),
    ]


def node_rules() -> list[Obj]:
    """``bootstrappolicy.NodeRules()``: what the Node authorizer grants a node outside its graph."""
    return [
        rule(("create",), ("authentication.k8s.io",), ("tokenreviews",)),
        rule(("create",), ("authorization.k8s.io",), ("subjectaccessreviews", "localsubjectaccessreviews")),
        rule(READ, ("",), ("services",)),
        rule(("create", "get", "list", "watch"), ("",), ("nodes",)),
        rule(("update", "patch"), ("",), ("nodes/status",)),
        rule(("update", "patch"), ("",), ("nodes",)),
        rule(("create", "update", "patch"), ("", "events.k8s.io"), ("events",)),
        rule(READ, ("",), ("pods",)),
        rule(("create", "delete"), ("",), ("pods",)),
        rule(("update", "patch"), ("",), ("pods/status",)),
        rule(("create",), ("",), ("pods/eviction",)),
        rule(READ, ("",), ("secrets", "configmaps")),
        rule(("get",), ("",), ("persistentvolumeclaims", "persistentvolumes")),
        rule(("get",), ("",), ("endpoints",)),
        rule(("get", "create", "update", "patch", "delete"), ("coordination.k8s.io",), ("leases",)),
        rule(("create",), ("",), ("serviceaccounts/token",)),
        rule(READ, ("node.k8s.io",), ("runtimeclasses",)),
    ]


#: The node components' debug paths (the proxy's, the network agent's): what kubelab trace reads.
NODE_DEBUG_URLS = ("/debug/rules", "/debug/network", "/debug/network/*")


def _component_roles() -> list[Obj]:
    return [
        _role(
            "system:kube-scheduler",
            [
                events_rule(),
                rule(("create",), ("coordination.k8s.io",), ("leases",)),
                rule(("get", "update"), ("coordination.k8s.io",), ("leases",), ("kube-scheduler",)),
                rule(("create",), ("",), ("endpoints",)),
                rule(("get", "update"), ("",), ("endpoints",), ("kube-scheduler",)),
                rule(READ, ("",), ("nodes",)),
                rule(("delete", *READ), ("",), ("pods",)),
                rule(("create",), ("",), ("bindings", "pods/binding")),
                rule(("patch", "update"), ("",), ("pods/status",)),
                rule(READ, ("",), ("replicationcontrollers", "services")),
                rule(READ, ("apps", "extensions"), ("replicasets",)),
                rule(READ, ("apps",), ("statefulsets",)),
                rule(READ, ("policy",), ("poddisruptionbudgets",)),
                rule(READ, ("",), ("persistentvolumeclaims", "persistentvolumes")),
                rule(("create",), ("authentication.k8s.io",), ("tokenreviews",)),
                rule(("create",), ("authorization.k8s.io",), ("subjectaccessreviews",)),
                rule(READ, ("storage.k8s.io",), ("csinodes", "csidrivers", "csistoragecapacities")),
                rule(READ, ("",), ("namespaces",)),
                rule(READ, ("",), ("configmaps",)),
            ],
        ),
        _role(
            "system:kube-controller-manager",
            [
                events_rule(),
                rule(("create",), ("coordination.k8s.io",), ("leases",)),
                rule(("get", "update"), ("coordination.k8s.io",), ("leases",), ("kube-controller-manager",)),
                rule(("create",), ("",), ("endpoints",)),
                rule(("get", "update"), ("",), ("endpoints",), ("kube-controller-manager",)),
                rule(("create",), ("",), ("secrets", "serviceaccounts")),
                rule(("delete",), ("",), ("secrets",)),
                rule(("get",), ("",), ("configmaps", "namespaces", "secrets", "serviceaccounts")),
                rule(("update",), ("",), ("secrets", "serviceaccounts")),
                rule(("create",), ("authentication.k8s.io",), ("tokenreviews",)),
                rule(("create",), ("authorization.k8s.io",), ("subjectaccessreviews",)),
                rule(("list", "watch"), ("*",), ("*",)),
                rule(("create",), ("",), ("serviceaccounts/token",)),
            ],
        ),
        _role(
            "system:node-proxier",
            [
                rule(("list", "watch"), ("",), ("services", "endpoints")),
                rule(READ, ("",), ("nodes",)),
                events_rule(),
                rule(("list", "watch"), ("discovery.k8s.io",), ("endpointslices",)),
            ],
        ),
        _role("system:node", node_rules()),
        # controlplane/dns: informers on Services and EndpointSlices (all namespaces); the ensurer keeps
        # kube-system/kube-dns's Service, Endpoints and EndpointSlice (get, create, update).
        _role(
            "system:kubelab-dns",
            [
                rule(READ, ("",), ("services",)),
                rule(READ, ("discovery.k8s.io",), ("endpointslices",)),
                rule(("create",), ("",), ("services", "endpoints")),
                rule(("create",), ("discovery.k8s.io",), ("endpointslices",)),
                rule(("get", "update"), ("",), ("services", "endpoints"), ("kube-dns",)),
                rule(("get", "update"), ("discovery.k8s.io",), ("endpointslices",), ("kube-dns",)),
            ],
        ),
        # netplugin/agent.py: a Node informer (routes to other nodes' pod CIDRs); netplugin/policy: informers
        # on NetworkPolicies, Pods and Namespaces. Read only.
        _role(
            "system:kubelab-netagent",
            [
                rule(("list", "watch"), ("",), ("nodes", "pods", "namespaces")),
                rule(("list", "watch"), ("networking.k8s.io",), ("networkpolicies",)),
            ],
        ),
        # controlplane/metricsserver: Kubernetes' system:metrics-server (read pods and nodes, the kubelet's
        # metrics) and system:auth-delegator (TokenReview/SubjectAccessReview for the requests the
        # aggregator forwards), plus what our metrics server does at start that a deployer does in
        # Kubernetes: register kube-system/metrics-server's Service, Endpoints and the APIService.
        _role(
            "system:metrics-server",
            [
                rule(READ, ("",), ("pods", "nodes")),
                rule(("get",), ("",), ("nodes/metrics", "nodes/stats")),
                rule(("create",), ("authentication.k8s.io",), ("tokenreviews",)),
                rule(("create",), ("authorization.k8s.io",), ("subjectaccessreviews",)),
                rule(("create",), ("",), ("services", "endpoints")),
                rule(("get", "update"), ("",), ("services", "endpoints"), ("metrics-server",)),
                rule(("create",), ("apiregistration.k8s.io",), ("apiservices",)),
                rule(("get", "update"), ("apiregistration.k8s.io",), ("apiservices",), ("v1beta1.metrics.k8s.io",)),
            ],
        ),
        # Kubernetes' system:auth-delegator: what a component needs to delegate authentication and
        # authorization of its own endpoints to the API server. Bound here to the proxy and the network
        # agent, whose debug endpoints (/debug/rules, /debug/network) check every request with a
        # TokenReview/SubjectAccessReview (controlplane/client/delegated.py).
        _role(
            "system:auth-delegator",
            [
                rule(("create",), ("authentication.k8s.io",), ("tokenreviews",)),
                rule(("create",), ("authorization.k8s.io",), ("subjectaccessreviews",)),
            ],
        ),
        # Who may read the node components' debug endpoints (kubelab trace); cluster-admin already may.
        # Bound to nobody: `kubectl create clusterrolebinding … --clusterrole=system:kubelab-node-debug`.
        _role("system:kubelab-node-debug", [urls(("get",), NODE_DEBUG_URLS)]),
        # lab/dashboard: read-only informers on Nodes, Pods, Services, EndpointSlices and Events, pod logs,
        # and resource metrics. Never a write.
        _role(
            "system:kubelab-dashboard",
            [
                rule(READ, ("",), ("nodes", "pods", "pods/log", "services", "endpoints", "events", "namespaces")),
                rule(READ, ("discovery.k8s.io",), ("endpointslices",)),
                rule(READ, ("events.k8s.io",), ("events",)),
                rule(READ, ("metrics.k8s.io",), ("nodes", "pods")),
                # its machine view is kubelab trace's: the nodes' debug endpoints
                urls(("get",), NODE_DEBUG_URLS),
            ],
        ),
    ]


# controller_policy.go, for the controllers kubelab's controller-manager runs (name → rules).
def controller_roles() -> dict[str, list[Obj]]:
    ev = events_rule()
    return {
        "clusterrole-aggregation-controller": [
            rule(
                ("escalate", "get", "list", "watch", "update", "patch"),
                ("rbac.authorization.k8s.io",),
                ("clusterroles",),
            )
        ],
        "daemon-set-controller": [
            rule(READ, ("extensions", "apps"), ("daemonsets",)),
            rule(("update",), ("extensions", "apps"), ("daemonsets/status", "daemonsets/finalizers")),
            rule(("list", "watch"), ("",), ("nodes",)),
            rule(("list", "watch", "create", "delete", "patch"), ("",), ("pods",)),
            rule(("create",), ("",), ("pods/binding",)),
            rule((*READ, "create", "delete", "update", "patch"), ("apps",), ("controllerrevisions",)),
            ev,
        ],
        "deployment-controller": [
            rule((*READ, "update"), ("extensions", "apps"), ("deployments",)),
            rule(("update",), ("extensions", "apps"), ("deployments/status", "deployments/finalizers")),
            rule((*READ, "create", "update", "patch", "delete"), ("apps", "extensions"), ("replicasets",)),
            rule((*READ, "update"), ("",), ("pods",)),
            ev,
        ],
        "endpoint-controller": [
            rule(READ, ("",), ("services", "pods")),
            rule((*READ, "create", "update", "delete"), ("",), ("endpoints",)),
            rule(("create",), ("",), ("endpoints/restricted",)),
            ev,
        ],
        "endpointslice-controller": [
            rule(READ, ("",), ("services", "pods", "nodes")),
            rule(("update",), ("",), ("services/finalizers",)),
            rule((*READ, "create", "update", "delete"), ("discovery.k8s.io",), ("endpointslices",)),
            ev,
        ],
        "generic-garbage-collector": [rule((*READ, "patch", "update", "delete"), ("*",), ("*",)), ev],
        "job-controller": [
            rule((*READ, "update", "patch"), ("batch",), ("jobs",)),
            rule(("update",), ("batch",), ("jobs/status", "jobs/finalizers")),
            rule(("list", "watch", "create", "delete", "patch"), ("",), ("pods",)),
            ev,
        ],
        "namespace-controller": [
            rule((*READ, "delete"), ("",), ("namespaces",)),
            rule(("update",), ("",), ("namespaces/finalize", "namespaces/status")),
            rule((*READ, "delete", "deletecollection"), ("*",), ("*",)),
        ],
        "node-controller": [
            rule((*READ, "update", "delete", "patch"), ("",), ("nodes",)),
            rule(("patch", "update"), ("",), ("nodes/status", "pods/status")),
            rule(("list", "watch", "get", "delete"), ("",), ("pods",)),
            ev,
        ],
        "pod-garbage-collector": [
            rule(("list", "watch", "delete"), ("",), ("pods",)),
            rule(READ, ("",), ("nodes",)),
            rule(("patch",), ("",), ("pods/status",)),
        ],
        "cronjob-controller": [
            rule((*READ, "update"), ("batch",), ("cronjobs",)),
            rule((*READ, "create", "update", "delete", "patch"), ("batch",), ("jobs",)),
            rule(("update",), ("batch",), ("cronjobs/status", "cronjobs/finalizers")),
            rule(("list", "delete"), ("",), ("pods",)),
            ev,
        ],
        "replication-controller": [
            rule((*READ, "update"), ("",), ("replicationcontrollers",)),
            rule(("update",), ("",), ("replicationcontrollers/status", "replicationcontrollers/finalizers")),
            rule(("list", "watch", "patch", "create", "delete"), ("",), ("pods",)),
            ev,
        ],
        "resourcequota-controller": [
            rule(("list", "watch"), ("*",), ("*",)),
            rule(("update",), ("",), ("resourcequotas/status",)),
            ev,
        ],
        "disruption-controller": [
            rule(READ, ("apps", "extensions"), ("deployments", "replicasets", "statefulsets")),
            rule(READ, ("",), ("replicationcontrollers", "pods")),
            rule(READ, ("policy",), ("poddisruptionbudgets",)),
            rule(("update",), ("policy",), ("poddisruptionbudgets/status",)),
            ev,
        ],
        "replicaset-controller": [
            rule((*READ, "update"), ("apps", "extensions"), ("replicasets",)),
            rule(("update",), ("apps", "extensions"), ("replicasets/status", "replicasets/finalizers")),
            rule(("list", "watch", "patch", "create", "delete"), ("",), ("pods",)),
            ev,
        ],
        "service-account-controller": [rule(("create",), ("",), ("serviceaccounts",)), ev],
        "statefulset-controller": [
            rule(("list", "watch"), ("",), ("pods",)),
            rule(READ, ("apps",), ("statefulsets",)),
            rule(("update",), ("apps",), ("statefulsets/status", "statefulsets/finalizers")),
            rule(("get", "create", "delete", "update", "patch"), ("",), ("pods",)),
            rule(("get", "create", "delete", "update", "patch", "list", "watch"), ("apps",), ("controllerrevisions",)),
            rule(("get", "create", "list", "watch"), ("",), ("persistentvolumeclaims",)),
            rule(("update", "delete"), ("",), ("persistentvolumeclaims",)),
            rule(("update",), ("",), ("pods/finalizers",)),
            ev,
        ],
        "root-ca-cert-publisher": [rule(("create", "update"), ("",), ("configmaps",)), ev],
    }


def cluster_roles() -> list[Obj]:
    roles = [
        _role("cluster-admin", [rule(("*",), ("*",), ("*",)), urls(("*",), ("*",))]),
        _role("system:discovery", [urls(("get",), (*_DISCOVERY_URLS, "/version", "/version/"))]),
        _role(
            "system:basic-user",
            [
                rule(("create",), ("authorization.k8s.io",), ("selfsubjectaccessreviews", "selfsubjectrulesreviews")),
                rule(("create",), ("authentication.k8s.io",), ("selfsubjectreviews",)),
            ],
        ),
        _role("system:public-info-viewer", [urls(("get",), _PUBLIC_URLS)]),
        _role("admin", [], None, agg="admin"),
        _role("edit", [], {AGG + "admin": "true"}, agg="edit"),
        _role("view", [], {AGG + "edit": "true"}, agg="view"),
        _role(
            "system:aggregate-to-admin",
            [
                rule(WRITE, ("rbac.authorization.k8s.io",), ("rolebindings", "roles")),
                rule(("create",), ("authorization.k8s.io",), ("localsubjectaccessreviews",)),
            ],
            {AGG + "admin": "true"},
        ),
        _role("system:aggregate-to-edit", _edit_rules(), {AGG + "edit": "true"}),
        _role("system:aggregate-to-view", _view_rules(), {AGG + "view": "true"}),
        *_component_roles(),
    ]
    # admin/edit/view carry "user-facing" labels in Kubernetes (kubernetes.io/bootstrapping only).
    roles.extend(_role("system:controller:" + name, rules) for name, rules in controller_roles().items())
    return roles


KCM_USER = "system:kube-controller-manager"


def cluster_role_bindings() -> list[Obj]:
    g, u = "Group", "User"
    out = [
        _binding("cluster-admin", "cluster-admin", [_subject(g, "system:masters")]),
        _binding("system:discovery", "system:discovery", [_subject(g, "system:authenticated")]),
        _binding("system:basic-user", "system:basic-user", [_subject(g, "system:authenticated")]),
        _binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            [_subject(g, "system:authenticated"), _subject(g, "system:unauthenticated")],
        ),
        _binding("system:kube-scheduler", "system:kube-scheduler", [_subject(u, "system:kube-scheduler")]),
        _binding("system:kube-controller-manager", "system:kube-controller-manager", [_subject(u, KCM_USER)]),
        _binding("system:node-proxier", "system:node-proxier", [_subject(u, "system:kube-proxy")]),
        _binding("system:node", "system:node", []),  # the Node authorizer grants these; bound to nobody
        _binding("system:kubelab-dns", "system:kubelab-dns", [_subject(u, "system:kubelab-dns")]),
        _binding("system:kubelab-netagent", "system:kubelab-netagent", [_subject(u, "system:kubelab-netagent")]),
        _binding("system:metrics-server", "system:metrics-server", [_subject(u, "system:metrics-server")]),
        _binding(
            "kubelab:node-debug:auth-delegator",
            "system:auth-delegator",
            [_subject(u, "system:kube-proxy"), _subject(u, "system:kubelab-netagent")],
        ),
        _binding("system:kubelab-dashboard", "system:kubelab-dashboard", [_subject(u, "system:kubelab-dashboard")]),
    ]
    for name in controller_roles():
        full = "system:controller:" + name
        out.append(_binding(full, full, [_subject("ServiceAccount", name, "kube-system"), _subject(u, KCM_USER)]))
    return out


# --- reconciliation ---------------------------------------------------------------------------


def _merge(have: Obj, want: Obj, list_field: str) -> bool:
    """Add ``want``'s missing entries of ``list_field`` and labels to ``have``; True when changed."""
    if (have.get("metadata") or {}).get("annotations", {}).get(AUTOUPDATE) == "false":
        return False
    changed = False
    current = list(have.get(list_field) or [])
    for item in want.get(list_field) or []:
        if item not in current:
            current.append(item)
            changed = True
    labels = have["metadata"].setdefault("labels", {})
    for k, v in (want["metadata"].get("labels") or {}).items():
        if labels.get(k) != v:
            labels[k] = v
            changed = True
    if "aggregationRule" in want and have.get("aggregationRule") != want["aggregationRule"]:
        have["aggregationRule"] = want["aggregationRule"]
        changed = True
    if changed:
        have[list_field] = current
    return changed


def reconcile(ops: Any) -> None:
    """Create or repair the bootstrap policy through ``ops`` (a ``ResourceOps``); idempotent."""
    wanted_roles = cluster_roles()
    for want in wanted_roles:
        _ensure(ops, registry.CLUSTERROLES, want, "rules")
    for want in cluster_role_bindings():
        _ensure(ops, registry.CLUSTERROLEBINDINGS, want, "subjects")
    items, _ = ops.list(registry.CLUSTERROLES, None)
    for role in items:
        rules = aggregate_rules(role, items)
        if rules is not None and rules != (role.get("rules") or []):
            role["rules"] = rules
            try:
                ops.update(registry.CLUSTERROLES, None, role["metadata"]["name"], role)
            except errors.Conflict:
                pass  # the aggregation controller got there first


def _ensure(ops: Any, res: registry.Resource, want: Obj, list_field: str) -> None:
    name = want["metadata"]["name"]
    try:
        ops.create(res, None, want)
        return
    except errors.AlreadyExists:
        pass
    have = ops.get(res, None, name)
    if _merge(have, want, list_field):
        log.info("reconciled bootstrap %s %s", res.kind, name)
        ops.update(res, None, name, have)
