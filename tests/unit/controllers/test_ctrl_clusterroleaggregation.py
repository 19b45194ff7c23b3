"""The ClusterRole aggregation controller fills an aggregated role from the roles its selectors match."""

from __future__ import annotations

from controlplane.api.registry import CLUSTERROLES
from controlplane.controllers.clusterroleaggregation import ClusterRoleAggregationController
from tests.unit.controllers.fake import FakeCluster

AGG = "rbac.authorization.k8s.io/aggregate-to-monitoring"
PODS = {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}
NODES = {"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}


def test_union_of_selected_roles_and_updates_on_label_change(cluster: FakeCluster) -> None:
    cluster.seed(
        CLUSTERROLES,
        {
            "metadata": {"name": "monitoring"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {AGG: "true"}}]},
        },
    )
    cluster.seed(CLUSTERROLES, {"metadata": {"name": "b-part", "labels": {AGG: "true"}}, "rules": [PODS, NODES]})
    cluster.seed(CLUSTERROLES, {"metadata": {"name": "a-part", "labels": {AGG: "true"}}, "rules": [PODS]})
    cluster.seed(
        CLUSTERROLES,
        {"metadata": {"name": "unrelated"}, "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]},
    )
    ctrl = ClusterRoleAggregationController(cluster.context())
    ctrl.sync("monitoring")
    assert cluster.objects[CLUSTERROLES]["monitoring"]["rules"] == [PODS, NODES]  # deduplicated, name order
    writes = len(cluster.calls)
    ctrl.sync("monitoring")  # level-triggered: nothing more to do
    assert len(cluster.calls) == writes
    # a source loses its label: its rules leave the aggregate
    b = cluster.objects[CLUSTERROLES]["b-part"]
    b["metadata"]["labels"] = {}
    cluster.update(CLUSTERROLES, b)
    assert "monitoring" in cluster.queues[ctrl.name].drain()
    ctrl.sync("monitoring")
    assert cluster.objects[CLUSTERROLES]["monitoring"]["rules"] == [PODS]


def test_roles_without_aggregation_rule_are_left_alone(cluster: FakeCluster) -> None:
    cluster.seed(CLUSTERROLES, {"metadata": {"name": "plain"}, "rules": [PODS]})
    ctrl = ClusterRoleAggregationController(cluster.context())
    ctrl.sync("plain")
    ctrl.sync("missing")
    assert cluster.objects[CLUSTERROLES]["plain"]["rules"] == [PODS]
    assert not cluster.calls
