"""Authorization pieces without a server: rule matching, the policy index, the Node authorizer and
its graph, escalation coverage, NodeRestriction, impersonation, the 403 wording and the bootstrap
policy's reconciliation (missing permissions restored, extra ones kept)."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.api import errors, registry
from controlplane.apiserver.admission import Admission
from controlplane.apiserver.auth import RequestAttributes, UserInfo
from controlplane.apiserver.authz import Chain, forbidden, parse_modes
from controlplane.apiserver.authz import bootstrap as bp
from controlplane.apiserver.authz.escalation import RBACEscalation, uncovered
from controlplane.apiserver.authz.impersonation import impersonate
from controlplane.apiserver.authz.node import NodeAuthorizer, NodeGraph
from controlplane.apiserver.authz.noderestriction import NodeRestriction
from controlplane.apiserver.authz.rbac import PolicyIndex, RBACAuthorizer, rule_allows
from controlplane.apiserver.resources import ResourceOps
from controlplane.storage.memory import MemoryStore

Obj = dict[str, Any]
ALICE = UserInfo("alice", groups=("team", "system:authenticated"))
NODE1 = UserInfo("system:node:n1", groups=("system:nodes", "system:authenticated"))


def attrs(
    verb: str, resource: str = "", ns: str = "", name: str = "", group: str = "", sub: str = ""
) -> RequestAttributes:
    return RequestAttributes(verb=verb, group=group, resource=resource, subresource=sub, namespace=ns, name=name)


def rule(
    verbs: list[str], resources: list[str], groups: list[str] | None = None, names: list[str] | None = None
) -> Obj:
    r: Obj = {"verbs": verbs, "apiGroups": groups if groups is not None else [""], "resources": resources}
    if names:
        r["resourceNames"] = names
    return r


@pytest.mark.parametrize(
    ("r", "a", "allowed"),
    [
        (rule(["get"], ["pods"]), attrs("get", "pods"), True),
        (rule(["get"], ["pods"]), attrs("list", "pods"), False),
        (rule(["*"], ["*"], ["*"]), attrs("delete", "deployments", group="apps"), True),
        (rule(["get"], ["pods"]), attrs("get", "pods", sub="log"), False),
        (rule(["get"], ["pods/*"]), attrs("get", "pods", sub="log"), True),
        (rule(["get"], ["*/scale"], ["*"]), attrs("get", "deployments", group="apps", sub="scale"), True),
        (rule(["get"], ["pods"], ["apps"]), attrs("get", "pods"), False),
        (rule(["get"], ["configmaps"], names=["a"]), attrs("get", "configmaps", name="a"), True),
        (rule(["get"], ["configmaps"], names=["a"]), attrs("get", "configmaps", name="b"), False),
        (
            {"verbs": ["get"], "nonResourceURLs": ["/healthz"]},
            RequestAttributes("get", path="/healthz", resource_request=False),
            True,
        ),
        (
            {"verbs": ["get"], "nonResourceURLs": ["/apis/*"]},
            RequestAttributes("get", path="/apis/apps", resource_request=False),
            True,
        ),
        (
            {"verbs": ["get"], "nonResourceURLs": ["/api"]},
            RequestAttributes("get", path="/apis", resource_request=False),
            False,
        ),
    ],
)
def test_rule_matching(r: Obj, a: RequestAttributes, allowed: bool) -> None:
    assert rule_allows(r, a) is allowed


def _binding(kind: str, name: str, role_kind: str, role: str, subjects: list[Obj], ns: str = "") -> Obj:
    md: Obj = {"name": name}
    if ns:
        md["namespace"] = ns
    return {"kind": kind, "metadata": md, "roleRef": {"kind": role_kind, "name": role}, "subjects": subjects}


def test_policy_index_by_subject_namespace_and_serviceaccount() -> None:
    idx = PolicyIndex()
    idx.apply("clusterroles", {"metadata": {"name": "view"}, "rules": [rule(["list"], ["pods"])]}, False)
    idx.apply("roles", {"metadata": {"name": "sec", "namespace": "a"}, "rules": [rule(["get"], ["secrets"])]}, False)
    idx.apply(
        "rolebindings",
        _binding("RoleBinding", "rb", "ClusterRole", "view", [{"kind": "Group", "name": "team"}], "a"),
        False,
    )
    idx.apply(
        "rolebindings",
        _binding("RoleBinding", "sa", "Role", "sec", [{"kind": "ServiceAccount", "name": "bot"}], "a"),
        False,
    )
    authz = RBACAuthorizer(idx)
    ok, reason = authz.authorize(ALICE, attrs("list", "pods", "a"))
    assert ok and reason == 'RBAC: allowed by RoleBinding "rb/a" of ClusterRole "view" to Group "team"'
    assert authz.authorize(ALICE, attrs("list", "pods", "b")) == (False, "")
    assert authz.authorize(ALICE, attrs("list", "pods")) == (False, "")  # a RoleBinding never grants cluster-wide
    bot = UserInfo("system:serviceaccount:a:bot", groups=("system:serviceaccounts",))
    assert authz.authorize(bot, attrs("get", "secrets", "a", "x"))[0]
    idx.apply("rolebindings", _binding("RoleBinding", "sa", "Role", "sec", [], "a"), True)
    assert not authz.authorize(bot, attrs("get", "secrets", "a", "x"))[0]
    assert idx.rules_for(ALICE, "a") == [rule(["list"], ["pods"])]


def _pod(name: str, node: str, secret: str) -> Obj:
    return {
        "metadata": {"name": name, "namespace": "ns"},
        "spec": {
            "nodeName": node,
            "serviceAccountName": "bot",
            "containers": [{"name": "c", "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm"}}}]}],
            "volumes": [{"name": "v", "secret": {"secretName": secret}}],
        },
    }


def test_node_authorizer_graph() -> None:
    graph = NodeGraph()
    node = NodeAuthorizer(graph)
    graph.apply(_pod("p1", "n1", "s1"), False)
    graph.apply(_pod("p2", "n2", "s2"), False)
    graph.apply(_pod("p3", "n1", "s1"), False)
    assert node.authorize(NODE1, attrs("get", "secrets", "ns", "s1")) == (True, "")
    assert node.authorize(NODE1, attrs("get", "configmaps", "ns", "cm"))[0]
    assert node.authorize(NODE1, attrs("create", "serviceaccounts", "ns", "bot", sub="token"))[0]
    assert node.authorize(NODE1, attrs("get", "secrets", "ns", "s2")) == (
        False,
        "no relationship found between node 'n1' and this object",
    )
    assert not node.authorize(NODE1, attrs("list", "secrets", "ns"))[0]
    graph.apply(_pod("p1", "n1", "s1"), True)
    assert node.authorize(NODE1, attrs("get", "secrets", "ns", "s1"))[0]  # p3 still needs it
    graph.apply(_pod("p3", "n1", "s1"), True)
    assert not node.authorize(NODE1, attrs("get", "secrets", "ns", "s1"))[0]
    lease = {"group": "coordination.k8s.io"}
    assert node.authorize(NODE1, attrs("update", "leases", "kube-node-lease", "n1", **lease))[0]
    assert not node.authorize(NODE1, attrs("update", "leases", "kube-node-lease", "n2", **lease))[0]
    assert node.authorize(NODE1, attrs("patch", "nodes", name="n2"))[0]  # NodeRestriction narrows this
    assert not node.authorize(NODE1, attrs("delete", "nodes", name="n1"))[0]
    assert node.authorize(ALICE, attrs("get", "pods", "ns", "p2")) == (False, "")  # not a node: no opinion


def test_node_restriction() -> None:
    graph = NodeGraph()
    graph.apply(_pod("mine", "n1", "s"), False)
    graph.apply(_pod("theirs", "n2", "s"), False)
    nr = NodeRestriction(graph)
    nr.check_request(NODE1, attrs("patch", "pods", "ns", "mine", sub="status"))
    with pytest.raises(errors.Forbidden, match=r"can only update pod status for pods with spec\.nodeName"):
        nr.check_request(NODE1, attrs("patch", "pods", "ns", "theirs", sub="status"))
    with pytest.raises(errors.Forbidden) as e:
        nr.check_request(NODE1, attrs("patch", "nodes", name="n2"))
    assert e.value.message == 'nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"'
    own = {"metadata": {"name": "n1", "labels": {"a": "b"}}}
    nr.admit(registry.NODES, own, None, NODE1)
    with pytest.raises(errors.Forbidden, match=r"node-restriction\.kubernetes\.io/zone"):
        nr.admit(
            registry.NODES,
            {"metadata": {"name": "n1", "labels": {"node-restriction.kubernetes.io/zone": "x"}}},
            own,
            NODE1,
        )
    mirror = {
        "metadata": {"name": "static-n1", "annotations": {"kubernetes.io/config.mirror": "x"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c"}]},
    }
    nr.admit(registry.PODS, mirror, None, NODE1)
    with pytest.raises(errors.Forbidden, match="can only create mirror pods"):
        nr.admit(registry.PODS, {"metadata": {"name": "x"}, "spec": {"nodeName": "n1"}}, None, NODE1)
    nr.admit(registry.PODS, {"metadata": {"name": "x"}, "spec": {}}, None, ALICE)  # other users: untouched


def test_escalation_coverage_and_refusal() -> None:
    owner = [rule(["get", "list"], ["pods", "pods/*"]), {"verbs": ["get"], "nonResourceURLs": ["/logs/*"]}]
    assert uncovered(owner, [rule(["get"], ["pods", "pods/log"])]) == []
    assert uncovered(owner, [{"verbs": ["get"], "nonResourceURLs": ["/logs/a"]}]) == []
    assert uncovered(owner, [rule(["*"], ["pods"])]) == [rule(["*"], ["pods"])]  # * is not held
    assert uncovered([rule(["get"], ["cm"], names=["a"])], [rule(["get"], ["cm"])]) == [rule(["get"], ["cm"])]
    idx = PolicyIndex()
    idx.apply("clusterroles", {"metadata": {"name": "pods"}, "rules": owner}, False)
    idx.apply("clusterroles", {"metadata": {"name": "cluster-admin"}, "rules": [rule(["*"], ["*"], ["*"])]}, False)
    idx.apply(
        "clusterrolebindings",
        _binding("ClusterRoleBinding", "b", "ClusterRole", "pods", [{"kind": "User", "name": "alice"}]),
        False,
    )
    esc = RBACEscalation(idx, Chain([RBACAuthorizer(idx)]))
    esc.admit(
        registry.ROLES, {"metadata": {"name": "r", "namespace": "x"}, "rules": [rule(["get"], ["pods"])]}, None, ALICE
    )
    role = {"metadata": {"name": "r", "namespace": "x"}, "rules": [rule(["delete"], ["pods"])]}
    with pytest.raises(errors.Forbidden) as e:
        esc.admit(registry.ROLES, role, None, ALICE)
    assert e.value.message == (
        'roles.rbac.authorization.k8s.io "r" is forbidden: user "alice" (groups=["team" "system:authenticated"]) '
        "is attempting to grant RBAC permissions not currently held:\n"
        '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}'
    )
    crb = _binding("ClusterRoleBinding", "x", "ClusterRole", "cluster-admin", [{"kind": "User", "name": "alice"}])
    with pytest.raises(errors.Forbidden):
        esc.admit(registry.CLUSTERROLEBINDINGS, crb, None, ALICE)
    esc.admit(registry.CLUSTERROLEBINDINGS, crb, None, UserInfo("root", groups=("system:masters",)))
    # the bind verb on that role is enough
    idx.apply(
        "clusterroles",
        {
            "metadata": {"name": "binder"},
            "rules": [rule(["bind"], ["clusterroles"], ["rbac.authorization.k8s.io"], ["cluster-admin"])],
        },
        False,
    )
    idx.apply(
        "clusterrolebindings",
        _binding("ClusterRoleBinding", "b2", "ClusterRole", "binder", [{"kind": "User", "name": "alice"}]),
        False,
    )
    esc.admit(registry.CLUSTERROLEBINDINGS, crb, None, ALICE)


def test_forbidden_messages_and_modes() -> None:
    e = forbidden(ALICE, attrs("list", "pods", "default"), "")
    assert (
        e.message
        == 'pods is forbidden: User "alice" cannot list resource "pods" in API group "" in the namespace "default"'
    )
    assert e.to_status()["details"] == {"kind": "pods"} and e.code == 403
    e = forbidden(ALICE, attrs("get", "deployments", name="web", group="apps", sub="scale"), "why")
    assert e.message == (
        'deployments.apps "web" is forbidden: User "alice" cannot get resource "deployments/scale" in API group '
        '"apps" at the cluster scope: why'
    )
    e = forbidden(ALICE, RequestAttributes("get", path="/metrics", resource_request=False), "")
    assert e.message == 'forbidden: User "alice" cannot get path "/metrics"'
    assert parse_modes("Node,RBAC") == ["Node", "RBAC"]
    for bad in ("", "Node,Node", "ABAC"):
        with pytest.raises(ValueError):
            parse_modes(bad)


def test_impersonation() -> None:
    idx = PolicyIndex()
    idx.apply(
        "clusterroles", {"metadata": {"name": "imp"}, "rules": [rule(["impersonate"], ["users", "groups"])]}, False
    )
    idx.apply(
        "clusterrolebindings",
        _binding("ClusterRoleBinding", "b", "ClusterRole", "imp", [{"kind": "User", "name": "alice"}]),
        False,
    )
    authz = RBACAuthorizer(idx)
    assert impersonate([(b"accept", b"*/*")], ALICE, authz) is None
    got = impersonate(
        [(b"Impersonate-User", b"bob"), (b"Impersonate-Group", b"a"), (b"Impersonate-Group", b"b")], ALICE, authz
    )
    assert got == UserInfo("bob", groups=("a", "b", "system:authenticated"))
    with pytest.raises(errors.Forbidden) as e:
        impersonate([(b"Impersonate-User", b"system:serviceaccount:ns:sa")], ALICE, authz)
    assert e.value.message.startswith('serviceaccounts "sa" is forbidden: User "alice" cannot impersonate resource')
    with pytest.raises(errors.BadRequest):
        impersonate([(b"Impersonate-Group", b"a")], ALICE, authz)


def test_bootstrap_reconcile_restores_missing_and_keeps_extra() -> None:
    store = MemoryStore()
    ops = ResourceOps(store, Admission(store))
    bp.reconcile(ops)
    view = ops.get(registry.CLUSTERROLES, None, "view")
    assert rule(["get", "list", "watch"], ["namespaces"]) in view["rules"]  # aggregated once at start
    assert not any("secrets" in r.get("resources", []) for r in view["rules"])
    edit = ops.get(registry.CLUSTERROLES, None, "edit")
    assert {r["resources"][0] for r in edit["rules"]} >= {"pods/attach", "configmaps"}
    admin = ops.get(registry.CLUSTERROLEBINDINGS, None, "cluster-admin")
    assert admin["subjects"] == [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": "system:masters"}]
    # a learner removes a rule and adds one: reconciliation restores the first and keeps the second
    sched = ops.get(registry.CLUSTERROLES, None, "system:kube-scheduler")
    extra = rule(["get"], ["widgets"], ["example.com"])
    removed = sched["rules"].pop(0)
    sched["rules"].append(extra)
    ops.update(registry.CLUSTERROLES, None, "system:kube-scheduler", sched)
    bp.reconcile(ops)
    rules = ops.get(registry.CLUSTERROLES, None, "system:kube-scheduler")["rules"]
    assert removed in rules and extra in rules
    # autoupdate "false" opts out
    sched = ops.get(registry.CLUSTERROLES, None, "system:kube-scheduler")
    sched["metadata"]["annotations"][bp.AUTOUPDATE] = "false"
    sched["rules"] = [extra]
    ops.update(registry.CLUSTERROLES, None, "system:kube-scheduler", sched)
    bp.reconcile(ops)
    assert ops.get(registry.CLUSTERROLES, None, "system:kube-scheduler")["rules"] == [extra]


def test_bootstrap_identities_can_do_their_jobs() -> None:
    store = MemoryStore()
    ops = ResourceOps(store, Admission(store))
    bp.reconcile(ops)
    idx = PolicyIndex()
    for res in (registry.CLUSTERROLES, registry.CLUSTERROLEBINDINGS):
        for obj in ops.list(res, None)[0]:
            idx.apply(res.plural, obj, False)
    authz = RBACAuthorizer(idx)
    sched = UserInfo("system:kube-scheduler", groups=("system:authenticated",))
    kcm = UserInfo("system:kube-controller-manager", groups=("system:authenticated",))
    anon = UserInfo("system:anonymous", groups=("system:unauthenticated",))
    lease = {"group": "coordination.k8s.io"}
    for user, a in [
        (sched, attrs("create", "pods", "ns", "p", sub="binding")),
        (sched, attrs("update", "leases", "kube-system", "kube-scheduler", **lease)),
        (sched, attrs("patch", "pods", "ns", "p", sub="status")),
        (sched, attrs("create", "events", "ns")),
        (kcm, attrs("create", "pods", "ns")),
        (kcm, attrs("create", "replicasets", "ns", group="apps")),
        (kcm, attrs("update", "deployments", "ns", "d", group="apps", sub="status")),
        (kcm, attrs("delete", "configmaps", "ns", "c")),
        (kcm, attrs("update", "leases", "kube-system", "kube-controller-manager", **lease)),
        (UserInfo("system:kube-proxy"), attrs("watch", "endpointslices", group="discovery.k8s.io")),
        (UserInfo("system:kubelab-dns"), attrs("update", "services", "kube-system", "kube-dns")),
        (UserInfo("system:kubelab-netagent"), attrs("list", "networkpolicies", group="networking.k8s.io")),
        (anon, RequestAttributes("get", path="/readyz", resource_request=False)),
        (ALICE, RequestAttributes("get", path="/apis/apps/v1", resource_request=False)),
        (ALICE, attrs("create", "selfsubjectaccessreviews", group="authorization.k8s.io")),
    ]:
        assert authz.authorize(user, a)[0], (user.name, a)
    for user, a in [
        (sched, attrs("update", "leases", "kube-system", "other", **lease)),
        (sched, attrs("get", "secrets", "ns", "s")),
        (UserInfo("system:kubelab-netagent"), attrs("get", "secrets", "ns", "s")),
        (UserInfo("system:kubelab-dns"), attrs("update", "services", "default", "web")),
        (anon, RequestAttributes("get", path="/api", resource_request=False)),
        (ALICE, attrs("list", "pods", "default")),
    ]:
        assert not authz.authorize(user, a)[0], (user.name, a)
