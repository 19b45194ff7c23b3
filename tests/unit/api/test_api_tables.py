"""Server-side Tables: the cells ``kubectl get`` prints on a real cluster for the same objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from controlplane.api import errors, registry
from controlplane.api.registry import Resource
from controlplane.api.tables import columns_for, human_duration, to_table

NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)


def ago(**kw: float) -> str:
    return (NOW - timedelta(**kw)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-5, "<invalid>"),
        (-1, "0s"),
        (0, "0s"),
        (5, "5s"),
        (119, "119s"),
        (120, "2m"),
        (182, "3m2s"),
        (600, "10m"),
        (179 * 60, "179m"),
        (3 * 3600, "3h"),
        (5 * 3600 + 3 * 60, "5h3m"),
        (8 * 3600, "8h"),
        (47 * 3600, "47h"),
        (2 * 86400 + 5 * 3600, "2d5h"),
        (3 * 86400, "3d"),
        (30 * 86400, "30d"),
        (800 * 86400, "2y70d"),
        (365 * 2 * 86400, "2y"),
        (3000 * 86400, "8y"),
    ],
)
def test_human_duration(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def _cells(resource: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    table = to_table(resource, [obj], list_rv="7", now=NOW)
    names = [c["name"] for c in table["columnDefinitions"]]
    (row,) = table["rows"]
    return dict(zip(names, row["cells"], strict=True))


def _pod(phase: str = "Running", statuses: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "metadata": {
            "name": "web-1",
            "namespace": "default",
            "creationTimestamp": ago(seconds=182),
            "labels": {"app": "web"},
        },
        "spec": {"containers": [{"name": "main", "image": "hello"}], "nodeName": "kl-node1"},
        "status": {"phase": phase, "podIP": "10.244.1.5", "containerStatuses": statuses or []},
    }
    for k, v in extra.items():
        pod[k].update(v)
    return pod


RUNNING = {"name": "main", "ready": True, "restartCount": 0, "state": {"running": {"startedAt": ago(seconds=100)}}}


@pytest.mark.parametrize(
    ("pod", "ready", "status", "restarts"),
    [
        (_pod("Pending"), "0/1", "Pending", "0"),
        (
            _pod(
                "Pending",
                [
                    {
                        "name": "main",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": {"reason": "ContainerCreating"}},
                    }
                ],
            ),
            "0/1",
            "ContainerCreating",
            "0",
        ),
        (_pod("Running", [RUNNING]), "1/1", "Running", "0"),
        (
            _pod(
                "Running",
                [
                    {
                        "name": "main",
                        "ready": False,
                        "restartCount": 4,
                        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                        "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(seconds=150)}},
                    }
                ],
            ),
            "0/1",
            "CrashLoopBackOff",
            "4 (2m30s ago)",
        ),
        (
            _pod(
                "Succeeded",
                [
                    {
                        "name": "main",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                    }
                ],
            ),
            "0/1",
            "Completed",
            "0",
        ),
        (
            _pod(
                "Failed",
                [{"name": "main", "ready": False, "restartCount": 0, "state": {"terminated": {"exitCode": 3}}}],
            ),
            "0/1",
            "ExitCode:3",
            "0",
        ),
        (
            _pod(
                "Failed",
                [
                    {
                        "name": "main",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": {"exitCode": 137, "signal": 9}},
                    }
                ],
            ),
            "0/1",
            "Signal:9",
            "0",
        ),
        (_pod("Running", [RUNNING], metadata={"deletionTimestamp": ago(seconds=1)}), "1/1", "Terminating", "0"),
        (_pod("Failed", status={"reason": "Evicted"}), "0/1", "Evicted", "0"),
        (
            _pod(
                "Pending",
                spec={"initContainers": [{"name": "init", "image": "busybox"}]},
                status={
                    "initContainerStatuses": [
                        {"name": "init", "ready": False, "restartCount": 0, "state": {"running": {}}}
                    ]
                },
            ),
            "0/1",
            "Init:0/1",
            "0",
        ),
        (
            _pod(
                "Pending",
                spec={"initContainers": [{"name": "init", "image": "busybox"}]},
                status={
                    "initContainerStatuses": [
                        {"name": "init", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                    ]
                },
            ),
            "0/1",
            "Init:CrashLoopBackOff",
            "2",
        ),
        (
            _pod(
                "Pending",
                spec={"initContainers": [{"name": "init", "image": "busybox"}]},
                status={
                    "initContainerStatuses": [
                        {"name": "init", "restartCount": 0, "state": {"terminated": {"exitCode": 2}}}
                    ]
                },
            ),
            "0/1",
            "Init:ExitCode:2",
            "0",
        ),
    ],
)
def test_pod_rows(pod: dict[str, Any], ready: str, status: str, restarts: str) -> None:
    cells = _cells(registry.PODS, pod)
    assert (cells["Name"], cells["Ready"], cells["Status"], cells["Restarts"], cells["Age"]) == (
        "web-1",
        ready,
        status,
        restarts,
        "3m2s",
    )
    assert (cells["IP"], cells["Node"], cells["Nominated Node"], cells["Readiness Gates"]) == (
        "10.244.1.5",
        "kl-node1",
        "<none>",
        "<none>",
    )


def test_pod_columns_and_wide_priorities() -> None:
    cols = columns_for(registry.PODS)
    assert [(c.name, c.priority) for c in cols] == [
        ("Name", 0),
        ("Ready", 0),
        ("Status", 0),
        ("Restarts", 0),
        ("Age", 0),
        ("IP", 1),
        ("Node", 1),
        ("Nominated Node", 1),
        ("Readiness Gates", 1),
    ]
    assert cols[0].format == "name"


def test_unscheduled_pod_wide_cells() -> None:
    pod = _pod("Pending")
    del pod["spec"]["nodeName"]
    del pod["status"]["podIP"]
    pod["spec"]["readinessGates"] = [{"conditionType": "example.com/ready"}]
    pod["status"]["conditions"] = [{"type": "example.com/ready", "status": "True"}]
    cells = _cells(registry.PODS, pod)
    assert (cells["IP"], cells["Node"], cells["Readiness Gates"]) == ("<none>", "<none>", "1/1")


def test_table_envelope_and_row_objects() -> None:
    pod = _pod()
    table = to_table(registry.PODS, [pod], list_rv="131", now=NOW)
    assert table["kind"] == "Table"
    assert table["apiVersion"] == "meta.k8s.io/v1"
    assert table["metadata"] == {"resourceVersion": "131"}
    obj = table["rows"][0]["object"]
    assert obj == {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": pod["metadata"]}
    full = to_table(registry.PODS, [pod], list_rv="1", include_object="Object", now=NOW)["rows"][0]["object"]
    assert full["spec"] == pod["spec"]
    assert (full["kind"], full["apiVersion"]) == ("Pod", "v1")
    assert to_table(registry.PODS, [pod], list_rv="1", include_object="None", now=NOW)["rows"][0]["object"] is None
    assert to_table(registry.PODS, [pod], list_rv="1", include_column_definitions=False)["columnDefinitions"] == []
    with pytest.raises(errors.BadRequest, match="includeObject"):
        to_table(registry.PODS, [pod], list_rv="1", include_object="Everything")


def test_completed_pod_row_condition() -> None:
    row = to_table(registry.PODS, [_pod("Succeeded")], list_rv="1", now=NOW)["rows"][0]
    assert row["conditions"][0]["type"] == "Completed"


def _svc(spec: dict[str, Any], status: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": "web", "creationTimestamp": ago(hours=50)}, "spec": spec, "status": status or {}}


@pytest.mark.parametrize(
    ("svc", "expected"),
    [
        (
            _svc(
                {
                    "type": "ClusterIP",
                    "clusterIP": "10.96.0.20",
                    "ports": [{"port": 80, "protocol": "TCP"}],
                    "selector": {"tier": "fe", "app": "web"},
                }
            ),
            ["web", "ClusterIP", "10.96.0.20", "<none>", "80/TCP", "2d2h", "app=web,tier=fe"],
        ),
        (
            _svc(
                {
                    "type": "NodePort",
                    "clusterIP": "10.96.0.21",
                    "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}],
                }
            ),
            ["web", "NodePort", "10.96.0.21", "<none>", "80:30080/TCP,53/UDP", "2d2h", "<none>"],
        ),
        (
            _svc({"type": "LoadBalancer", "clusterIP": "10.96.0.22", "ports": [{"port": 443, "nodePort": 31443}]}),
            ["web", "LoadBalancer", "10.96.0.22", "<pending>", "443:31443/TCP", "2d2h", "<none>"],
        ),
        (
            _svc(
                {"type": "LoadBalancer", "clusterIP": "10.96.0.22", "ports": []},
                {"loadBalancer": {"ingress": [{"ip": "192.168.56.200"}]}},
            ),
            ["web", "LoadBalancer", "10.96.0.22", "192.168.56.200", "<none>", "2d2h", "<none>"],
        ),
        (
            _svc({"type": "ExternalName", "externalName": "example.com"}),
            ["web", "ExternalName", "<none>", "example.com", "<none>", "2d2h", "<none>"],
        ),
        (
            _svc({"clusterIP": "None", "ports": [{"port": 5432}], "externalIPs": ["192.168.56.9"]}),
            ["web", "ClusterIP", "None", "192.168.56.9", "5432/TCP", "2d2h", "<none>"],
        ),
    ],
)
def test_service_rows(svc: dict[str, Any], expected: list[Any]) -> None:
    assert list(_cells(registry.SERVICES, svc).values()) == expected


def test_workload_rows() -> None:
    template = {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}, {"name": "log", "image": "busybox"}]}}
    dep = {
        "metadata": {"name": "web", "creationTimestamp": ago(minutes=15)},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template},
        "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
    }
    assert list(_cells(registry.DEPLOYMENTS, dep).values()) == [
        "web",
        "2/3",
        3,
        2,
        "15m",
        "nginx,log",
        "nginx:1.25,busybox",
        "app=web",
    ]
    rs = {
        "metadata": {"name": "web-abc"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template},
        "status": {"replicas": 3},
    }
    assert list(_cells(registry.REPLICASETS, rs).values()) == [
        "web-abc",
        3,
        3,
        0,
        "<unknown>",
        "nginx,log",
        "nginx:1.25,busybox",
        "app=web",
    ]
    ds = {
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"spec": {**template["spec"], "nodeSelector": {"kubernetes.io/os": "linux"}}},
        },
        "status": {
            "desiredNumberScheduled": 2,
            "currentNumberScheduled": 2,
            "numberReady": 1,
            "updatedNumberScheduled": 2,
            "numberAvailable": 1,
        },
    }
    cells = _cells(registry.DAEMONSETS, ds)
    assert [cells[k] for k in ("Desired", "Current", "Ready", "Up-to-date", "Available", "Node Selector")] == [
        2,
        2,
        1,
        2,
        1,
        "kubernetes.io/os=linux",
    ]
    sts = {"metadata": {"name": "db"}, "spec": {"replicas": 3, "template": template}, "status": {"readyReplicas": 1}}
    assert _cells(registry.STATEFULSETS, sts)["Ready"] == "1/3"


@pytest.mark.parametrize(
    ("spec", "status", "meta", "expected"),
    [
        ({"completions": 1}, {}, {}, ("Running", "0/1", "")),
        (
            {"completions": 3},
            {
                "succeeded": 3,
                "startTime": ago(seconds=100),
                "completionTime": ago(seconds=40),
                "conditions": [{"type": "Complete", "status": "True"}],
            },
            {},
            ("Complete", "3/3", "60s"),
        ),
        ({"parallelism": 2}, {"startTime": ago(seconds=30)}, {}, ("Running", "0/1 of 2", "30s")),
        ({"completions": 1}, {"conditions": [{"type": "Failed", "status": "True"}]}, {}, ("Failed", "0/1", "")),
        ({"completions": 1}, {}, {"deletionTimestamp": ago(seconds=1)}, ("Terminating", "0/1", "")),
        (
            {"completions": 1, "suspend": True},
            {"conditions": [{"type": "Suspended", "status": "True"}]},
            {},
            ("Suspended", "0/1", ""),
        ),
    ],
)
def test_job_rows(
    spec: dict[str, Any], status: dict[str, Any], meta: dict[str, Any], expected: tuple[str, str, str]
) -> None:
    cells = _cells(registry.JOBS, {"metadata": {"name": "pi", **meta}, "spec": spec, "status": status})
    assert (cells["Status"], cells["Completions"], cells["Duration"]) == expected


@pytest.mark.parametrize(
    ("conditions", "unschedulable", "status"),
    [
        ([{"type": "Ready", "status": "True"}], False, "Ready"),
        ([{"type": "Ready", "status": "False"}], False, "NotReady"),
        ([{"type": "Ready", "status": "Unknown"}], False, "NotReady"),
        ([], False, "Unknown"),
        ([{"type": "Ready", "status": "True"}], True, "Ready,SchedulingDisabled"),
    ],
)
def test_node_rows(conditions: list[dict[str, str]], unschedulable: bool, status: str) -> None:
    node = {
        "metadata": {
            "name": "kl-node1",
            "creationTimestamp": ago(days=3),
            "labels": {"node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "worker"},
        },
        "spec": {"unschedulable": unschedulable},
        "status": {
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": "192.168.56.11"},
                {"type": "Hostname", "address": "kl-node1"},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.33.1-kubelab",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "kernelVersion": "6.1.0",
                "containerRuntimeVersion": "runc://1.1.5",
            },
        },
    }
    assert list(_cells(registry.NODES, node).values()) == [
        "kl-node1",
        status,
        "control-plane,worker",
        "3d",
        "v1.33.1-kubelab",
        "192.168.56.11",
        "<none>",
        "Debian GNU/Linux 12 (bookworm)",
        "6.1.0",
        "runc://1.1.5",
    ]


def test_event_rows() -> None:
    ev = {
        "metadata": {"name": "web-1.17a", "namespace": "default"},
        "involvedObject": {
            "kind": "Pod",
            "name": "web-1",
            "namespace": "default",
            "fieldPath": "spec.containers{main}",
        },
        "reason": "Pulled",
        "message": "Successfully pulled image  \n",
        "type": "Normal",
        "source": {"component": "kubelet", "host": "kl-node1"},
        "firstTimestamp": ago(minutes=5),
        "lastTimestamp": ago(seconds=30),
        "count": 3,
    }
    cols = columns_for(registry.EVENTS)
    assert [c.name for c in cols if c.priority == 0] == ["Last Seen", "Type", "Reason", "Object", "Message"]
    assert [c.name for c in cols if c.format == "name"] == ["Name"]
    cells = _cells(registry.EVENTS, ev)
    assert cells == {
        "Last Seen": "30s",
        "Type": "Normal",
        "Reason": "Pulled",
        "Object": "pod/web-1",
        "Subobject": "spec.containers{main}",
        "Source": "kubelet, kl-node1",
        "Message": "Successfully pulled image",
        "First Seen": "5m",
        "Count": 3,
        "Name": "web-1.17a",
    }
    new_style = {
        "metadata": {"name": "e"},
        "involvedObject": {"kind": "Node"},
        "eventTime": ago(seconds=9),
        "reportingComponent": "noded",
    }
    cells = _cells(registry.EVENTS, new_style)
    assert (cells["Last Seen"], cells["Object"], cells["Count"], cells["Source"]) == ("9s", "node", 1, "noded")


@pytest.mark.parametrize(
    ("resource", "obj", "expected"),
    [
        (
            registry.NAMESPACES,
            {"metadata": {"name": "default"}, "status": {"phase": "Active"}},
            ["default", "Active", "<unknown>"],
        ),
        (
            registry.ENDPOINTS,
            {
                "metadata": {"name": "web"},
                "subsets": [{"addresses": [{"ip": f"10.244.1.{i}"} for i in range(1, 5)], "ports": [{"port": 8080}]}],
            },
            ["web", "10.244.1.1:8080,10.244.1.2:8080,10.244.1.3:8080 + 1 more...", "<unknown>"],
        ),
        (registry.ENDPOINTS, {"metadata": {"name": "web"}}, ["web", "<none>", "<unknown>"]),
        (
            registry.ENDPOINTSLICES,
            {
                "metadata": {"name": "web-x"},
                "addressType": "IPv4",
                "ports": [{"port": 8080}],
                "endpoints": [{"addresses": ["10.244.1.5"]}, {"addresses": ["10.244.2.5"]}],
            },
            ["web-x", "IPv4", "8080", "10.244.1.5,10.244.2.5", "<unknown>"],
        ),
        (
            registry.ENDPOINTSLICES,
            {"metadata": {"name": "e"}, "addressType": "IPv4"},
            ["e", "IPv4", "<unset>", "<unset>", "<unknown>"],
        ),
        (
            registry.LEASES,
            {"metadata": {"name": "kl-node1"}, "spec": {"holderIdentity": "kl-node1"}},
            ["kl-node1", "kl-node1", "<unknown>"],
        ),
        (
            registry.CONFIGMAPS,
            {"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}},
            ["c", 3, "<unknown>"],
        ),
        (
            registry.SECRETS,
            {"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "MQ=="}},
            ["s", "Opaque", 1, "<unknown>"],
        ),
        (registry.SERVICEACCOUNTS, {"metadata": {"name": "default"}}, ["default", 0, "<unknown>"]),
        (
            registry.CONTROLLERREVISIONS,
            {
                "metadata": {
                    "name": "web-1",
                    "ownerReferences": [
                        {"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "controller": True}
                    ],
                },
                "revision": 2,
            },
            ["web-1", "daemonset.apps/agent", 2, "<unknown>"],
        ),
    ],
)
def test_other_rows(resource: Resource, obj: dict[str, Any], expected: list[Any]) -> None:
    assert list(_cells(resource, obj).values()) == expected


@pytest.mark.parametrize("resource", registry.RESOURCES, ids=lambda r: r.plural)
def test_every_kind_has_a_name_column_and_survives_garbage(resource: Resource) -> None:
    cols = columns_for(resource)
    assert sum(1 for c in cols if c.format == "name") == 1
    for garbage in (
        {},
        {"metadata": None, "spec": "x", "status": [1]},
        {"metadata": {"name": "x", "creationTimestamp": "nope"}},
    ):
        table = to_table(resource, [garbage], list_rv="1", now=NOW)
        assert len(table["rows"][0]["cells"]) == len(cols)
