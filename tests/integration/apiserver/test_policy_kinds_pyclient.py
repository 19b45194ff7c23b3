"""The policy kinds through the official Python client's typed APIs: every object the server
returns (quota, limit range, PDB with its required status integers, priority classes incl. the two
system classes, ingress and ingress class) deserialises into the client's models; a PDB-guarded
pod's eviction answers 429 with Kubernetes' message and DisruptionBudget cause."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.helpers.apiserver import RunningApiServer

NS = "policy-pyclient"


@pytest.fixture(scope="module")
def api(server: RunningApiServer) -> Iterator[client.ApiClient]:
    c = config.new_client_from_config(str(server.kubeconfig))
    core = client.CoreV1Api(c)
    core.create_namespace({"metadata": {"name": NS}})
    try:
        yield c
    finally:
        core.delete_namespace(NS)
        for delete in (
            lambda: client.SchedulingV1Api(c).delete_priority_class("pyclient-hi"),
            lambda: client.NetworkingV1Api(c).delete_ingress_class("pyclient-lab"),
        ):
            try:
                delete()
            except ApiException:
                pass
        c.close()


def test_typed_round_trip_of_policy_kinds(api: client.ApiClient) -> None:
    core, pol = client.CoreV1Api(api), client.PolicyV1Api(api)
    sch, net = client.SchedulingV1Api(api), client.NetworkingV1Api(api)
    core.create_namespaced_resource_quota(NS, {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "3"}}})
    limits = {"limits": [{"type": "Container", "max": {"cpu": "1"}}]}
    core.create_namespaced_limit_range(NS, {"metadata": {"name": "l"}, "spec": limits})
    pdb = {"metadata": {"name": "b"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "x"}}}}
    pol.create_namespaced_pod_disruption_budget(NS, pdb)
    sch.create_priority_class({"metadata": {"name": "pyclient-hi"}, "value": 100})
    net.create_ingress_class({"metadata": {"name": "pyclient-lab"}, "spec": {"controller": "kubelab.io/none"}})
    backend = {"service": {"name": "s", "port": {"number": 80}}}
    net.create_namespaced_ingress(NS, {"metadata": {"name": "i"}, "spec": {"defaultBackend": backend}})

    assert core.list_namespaced_resource_quota(NS).items[0].spec.hard == {"pods": "3"}
    # SetDefaults_LimitRange: default (limit) and defaultRequest from max
    item = core.read_namespaced_limit_range("l", NS).spec.limits[0]
    assert item.default == {"cpu": "1"} and item.default_request == {"cpu": "1"}
    status = pol.read_namespaced_pod_disruption_budget("b", NS).status
    assert (status.current_healthy, status.desired_healthy, status.disruptions_allowed, status.expected_pods) == (
        0,
        0,
        0,
        0,
    )
    classes = {p.metadata.name: p.value for p in sch.list_priority_class().items}
    assert classes["system-node-critical"] == 2000001000 and classes["pyclient-hi"] == 100
    assert sch.read_priority_class("pyclient-hi").preemption_policy == "PreemptLowerPriority"
    assert net.read_namespaced_ingress("i", NS).spec.default_backend.service.port.number == 80
    assert net.read_ingress_class("pyclient-lab").spec.controller == "kubelab.io/none"


def test_eviction_refused_by_budget_is_429(api: client.ApiClient) -> None:
    core, pol = client.CoreV1Api(api), client.PolicyV1Api(api)
    labels = {"app": "guarded"}
    core.create_namespaced_pod(
        NS, {"metadata": {"name": "g", "labels": labels}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    )
    ready = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    core.patch_namespaced_pod_status("g", NS, {"status": ready})
    pol.create_namespaced_pod_disruption_budget(
        NS, {"metadata": {"name": "guard"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": labels}}}
    )
    # no disruption controller in this server: write the status it would compute
    guard = pol.read_namespaced_pod_disruption_budget("guard", NS)
    status = {"observedGeneration": guard.metadata.generation, "currentHealthy": 1, "desiredHealthy": 1,
              "expectedPods": 1, "disruptionsAllowed": 0}  # fmt: skip
    pol.patch_namespaced_pod_disruption_budget_status("guard", NS, {"status": status})
    eviction = {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "g", "namespace": NS}}
    with pytest.raises(ApiException) as e:
        core.create_namespaced_pod_eviction("g", NS, eviction)
    assert e.value.status == 429
    body = json.loads(e.value.body)
    assert body["reason"] == "TooManyRequests"
    assert body["message"] == "Cannot evict pod as it would violate the pod's disruption budget."
    assert body["details"]["causes"] == [
        {
            "reason": "DisruptionBudget",
            "message": "The disruption budget guard needs 1 healthy pods and has 1 currently",
        }
    ]
    assert core.read_namespaced_pod("g", NS).metadata.deletion_timestamp is None
    status["disruptionsAllowed"] = 1
    pol.patch_namespaced_pod_disruption_budget_status("guard", NS, {"status": status})
    core.create_namespaced_pod_eviction("g", NS, eviction)
    after = pol.read_namespaced_pod_disruption_budget("guard", NS).status
    assert after.disruptions_allowed == 0 and "g" in (after.disrupted_pods or {})


def test_object_count_quota_holds_right_after_it_is_created(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    hard = {"count/configmaps": "1", "configmaps": "1"}
    core.create_namespaced_resource_quota(NS, {"metadata": {"name": "cm-count"}, "spec": {"hard": hard}})
    try:
        core.create_namespaced_config_map(NS, {"metadata": {"name": "one"}})
        with pytest.raises(ApiException) as e:
            core.create_namespaced_config_map(NS, {"metadata": {"name": "two"}})
        assert e.value.status == 403
        assert json.loads(e.value.body)["message"] == (
            'configmaps "two" is forbidden: exceeded quota: cm-count, requested: configmaps=1,count/configmaps=1, '
            "used: configmaps=1,count/configmaps=1, limited: configmaps=1,count/configmaps=1"
        )
        with pytest.raises(ApiException):
            core.read_namespaced_config_map("two", NS)
    finally:
        core.delete_namespaced_resource_quota("cm-count", NS)
        core.delete_namespaced_config_map("one", NS)
