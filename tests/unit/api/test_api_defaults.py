"""Server-side defaults, compared with what a real kube-apiserver stores for the same manifest."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from controlplane.api import registry
from controlplane.api.defaults import apply_defaults, drop_type_dependent_fields, image_pull_policy, qos_class
from controlplane.api.registry import Resource
from controlplane.api.validation import validate


def _pod(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": "busybox"}], **spec},
    }


def test_pod_defaults_match_a_real_cluster() -> None:
    pod = _pod()
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": 80}]
    apply_defaults(registry.PODS, pod)
    spec = pod["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["securityContext"] == {}
    assert spec["enableServiceLinks"] is True
    assert spec["serviceAccountName"] == "default"
    assert spec["serviceAccount"] == "default"
    assert "priority" not in spec  # set by Priority admission, not by defaulting
    assert spec["tolerations"] == [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {
            "key": "node.kubernetes.io/unreachable",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        },
    ]
    c = spec["containers"][0]
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert c["terminationMessagePolicy"] == "File"
    assert c["imagePullPolicy"] == "Always"
    assert c["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    assert c["resources"] == {}
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


def test_defaults_never_override_and_are_idempotent() -> None:
    pod = _pod(restartPolicy="Never", dnsPolicy="Default", terminationGracePeriodSeconds=0)
    pod["spec"]["containers"][0].update(imagePullPolicy="Never", ports=[{"containerPort": 53, "protocol": "UDP"}])
    apply_defaults(registry.PODS, pod)
    once = copy.deepcopy(pod)
    apply_defaults(registry.PODS, pod)
    assert pod == once
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["dnsPolicy"] == "Default"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 0
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == "Never"
    assert pod["spec"]["containers"][0]["ports"][0]["protocol"] == "UDP"


def test_existing_toleration_for_not_ready_is_kept() -> None:
    mine = {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}
    pod = _pod(tolerations=[mine])
    apply_defaults(registry.PODS, pod)
    tols = pod["spec"]["tolerations"]
    assert tols[0] == mine
    assert [t["key"] for t in tols] == ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"]
    everything = _pod(tolerations=[{"operator": "Exists"}])
    apply_defaults(registry.PODS, everything)
    assert everything["spec"]["tolerations"] == [{"operator": "Exists"}]


@pytest.mark.parametrize(
    ("image", "policy"),
    [
        ("busybox", "Always"),
        ("busybox:latest", "Always"),
        ("busybox:1.36", "IfNotPresent"),
        ("192.168.56.1:5000/kubelab/hello", "Always"),
        ("192.168.56.1:5000/kubelab/hello:v1", "IfNotPresent"),
        ("localhost:5000/x:latest", "Always"),
        ("busybox@sha256:" + "a" * 64, "IfNotPresent"),
    ],
)
def test_image_pull_policy(image: str, policy: str) -> None:
    assert image_pull_policy(image) == policy


@pytest.mark.parametrize(
    ("resources", "qos"),
    [
        ([{}], "BestEffort"),
        ([{"requests": {"cpu": "100m"}}], "Burstable"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}], "Guaranteed"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m", "memory": "1Gi"}}], "Burstable"),
        ([{"limits": {"cpu": "1", "memory": "1Gi"}}, {}], "Burstable"),
    ],
)
def test_qos_class(resources: list[dict[str, Any]], qos: str) -> None:
    spec = {"containers": [{"name": f"c{i}", "resources": r} for i, r in enumerate(resources)]}
    assert qos_class(spec) == qos


def test_requests_default_to_limits_and_make_guaranteed() -> None:
    pod = _pod()
    pod["spec"]["containers"][0]["resources"] = {"limits": {"cpu": "1", "memory": "64Mi"}}
    apply_defaults(registry.PODS, pod)
    assert pod["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "1", "memory": "64Mi"}
    assert pod["status"]["qosClass"] == "Guaranteed"


def test_probe_and_volume_defaults() -> None:
    pod = _pod(volumes=[{"name": "cfg", "configMap": {"name": "c"}}, {"name": "scratch"}])
    pod["spec"]["containers"][0]["readinessProbe"] = {"httpGet": {"port": 8080}}
    apply_defaults(registry.PODS, pod)
    probe = pod["spec"]["containers"][0]["readinessProbe"]
    assert probe == {
        "httpGet": {"port": 8080, "path": "/", "scheme": "HTTP"},
        "timeoutSeconds": 1,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert pod["spec"]["volumes"] == [
        {"name": "cfg", "configMap": {"name": "c", "defaultMode": 420}},
        {"name": "scratch", "emptyDir": {}},
    ]


def test_host_network_ports_default_host_port() -> None:
    pod = _pod(hostNetwork=True)
    pod["spec"]["containers"][0]["ports"] = [{"containerPort": 9100}]
    apply_defaults(registry.PODS, pod)
    assert pod["spec"]["containers"][0]["ports"] == [{"containerPort": 9100, "hostPort": 9100, "protocol": "TCP"}]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"selector": {"app": "web"}, "ports": [{"port": 80}]},
            {
                "selector": {"app": "web"},
                "type": "ClusterIP",
                "sessionAffinity": "None",
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 80}],
                "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
            },
        ),
        (
            {"type": "NodePort", "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30080}]},
            {
                "type": "NodePort",
                "sessionAffinity": "None",
                "ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080, "nodePort": 30080}],
                "internalTrafficPolicy": "Cluster",
                "ipFamilies": ["IPv4"],
                "ipFamilyPolicy": "SingleStack",
                "externalTrafficPolicy": "Cluster",
            },
        ),
        (
            {"type": "ExternalName", "externalName": "example.com"},
            {"type": "ExternalName", "externalName": "example.com", "sessionAffinity": "None"},
        ),
    ],
)
def test_service_defaults(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    svc = {"metadata": {"name": "s"}, "spec": spec}
    apply_defaults(registry.SERVICES, svc)
    assert svc["spec"] == expected
    assert svc["status"] == {"loadBalancer": {}}


def test_deployment_defaults_and_template() -> None:
    d: dict[str, Any] = {
        "metadata": {"name": "web"},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "x:1"}]}}},
    }
    apply_defaults(registry.DEPLOYMENTS, d)
    s = d["spec"]
    assert s["replicas"] == 1
    assert s["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert s["revisionHistoryLimit"] == 10
    assert s["progressDeadlineSeconds"] == 600
    t = s["template"]["spec"]
    assert t["restartPolicy"] == "Always"
    assert t["containers"][0]["imagePullPolicy"] == "IfNotPresent"
    assert "tolerations" not in t  # admission defaults apply to pods, not templates
    assert "serviceAccountName" not in t


def test_recreate_strategy_gets_no_rolling_update() -> None:
    d: dict[str, Any] = {"spec": {"replicas": 0, "strategy": {"type": "Recreate"}}}
    apply_defaults(registry.DEPLOYMENTS, d)
    assert d["spec"]["strategy"] == {"type": "Recreate"}
    assert d["spec"]["replicas"] == 0


def test_statefulset_daemonset_replicaset_defaults() -> None:
    sts: dict[str, Any] = {"spec": {"serviceName": "db"}}
    apply_defaults(registry.STATEFULSETS, sts)
    assert sts["spec"]["podManagementPolicy"] == "OrderedReady"
    assert sts["spec"]["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}
    assert sts["spec"]["replicas"] == 1
    ds: dict[str, Any] = {"spec": {}}
    apply_defaults(registry.DAEMONSETS, ds)
    assert ds["spec"]["updateStrategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
    }
    rs: dict[str, Any] = {"spec": {}}
    apply_defaults(registry.REPLICASETS, rs)
    assert rs["spec"]["replicas"] == 1


def test_job_defaults_and_generated_selector() -> None:
    job: dict[str, Any] = {
        "metadata": {"name": "pi", "uid": "u-1"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}},
    }
    apply_defaults(registry.JOBS, job)
    s = job["spec"]
    assert (s["completions"], s["parallelism"], s["backoffLimit"]) == (1, 1, 6)
    assert s["completionMode"] == "NonIndexed"
    assert s["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}
    labels = s["template"]["metadata"]["labels"]
    assert labels["batch.kubernetes.io/job-name"] == "pi"
    assert labels["batch.kubernetes.io/controller-uid"] == "u-1"
    parallel: dict[str, Any] = {"spec": {"parallelism": 3}}
    apply_defaults(registry.JOBS, parallel)
    assert parallel["spec"].get("completions") is None
    assert parallel["spec"]["parallelism"] == 3


def test_namespace_defaults() -> None:
    ns: dict[str, Any] = {"metadata": {"name": "team-a"}}
    apply_defaults(registry.NAMESPACES, ns)
    assert ns["spec"] == {"finalizers": ["kubernetes"]}
    assert ns["status"] == {"phase": "Active"}
    assert ns["metadata"]["labels"] == {"kubernetes.io/metadata.name": "team-a"}


@pytest.mark.parametrize(
    ("resource", "obj", "path", "value"),
    [
        (registry.ENDPOINTSLICES, {"ports": [{"port": 80}]}, ("ports", 0, "protocol"), "TCP"),
        (registry.ENDPOINTS, {"subsets": [{"ports": [{"port": 80}]}]}, ("subsets", 0, "ports", 0, "protocol"), "TCP"),
        (registry.SECRETS, {"data": {}}, ("type",), "Opaque"),
        (registry.NODES, {"status": {"capacity": {"cpu": "2"}}}, ("status", "allocatable", "cpu"), "2"),
        (registry.NODES, {"spec": {"podCIDR": "10.244.1.0/24"}}, ("spec", "podCIDRs"), ["10.244.1.0/24"]),
    ],
)
def test_other_kinds(resource: Resource, obj: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    apply_defaults(resource, obj)
    cur: Any = obj
    for p in path:
        cur = cur[p]
    assert cur == value


@pytest.mark.parametrize(
    "body", [{"spec": "nope"}, {"spec": {"containers": "nope"}}, {"spec": {"containers": [1, None]}}]
)
def test_malformed_bodies_are_left_for_validation(body: dict[str, Any]) -> None:
    apply_defaults(registry.PODS, body)  # must not raise


def _nodeport_svc() -> dict[str, Any]:
    svc: dict[str, Any] = {
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "NodePort", "clusterIP": "10.96.0.5", "ports": [{"port": 80, "nodePort": 30080}]},
    }
    apply_defaults(registry.SERVICES, svc)
    return svc


def test_nodeport_to_clusterip_drops_allocated_node_ports() -> None:
    old = _nodeport_svc()
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"  # what kubectl apply's patch changes; the merged ports keep nodePort
    drop_type_dependent_fields(registry.SERVICES, new, old)
    apply_defaults(registry.SERVICES, new)
    assert new["spec"]["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]
    assert "externalTrafficPolicy" not in new["spec"]
    assert new["spec"]["clusterIP"] == "10.96.0.5"
    assert validate(registry.SERVICES, new, old) == []


def test_a_node_port_changed_with_the_type_is_kept_for_validation() -> None:
    old = _nodeport_svc()
    new = copy.deepcopy(old)
    new["spec"]["type"] = "ClusterIP"
    new["spec"]["ports"][0]["nodePort"] = 30081
    drop_type_dependent_fields(registry.SERVICES, new, old)
    assert new["spec"]["ports"][0]["nodePort"] == 30081
    assert [c.field for c in validate(registry.SERVICES, new, old)] == ["spec.ports[0].nodePort"]


def test_to_external_name_drops_cluster_ip() -> None:
    old = _nodeport_svc()
    new = copy.deepcopy(old)
    new["spec"].update(type="ExternalName", externalName="example.com")
    drop_type_dependent_fields(registry.SERVICES, new, old)
    assert "clusterIP" not in new["spec"]
    assert "nodePort" not in new["spec"]["ports"][0]
    unchanged = _nodeport_svc()
    drop_type_dependent_fields(registry.SERVICES, unchanged, _nodeport_svc())
    assert unchanged == _nodeport_svc()
