"""Acceptance: the official ``kubernetes`` Python client against the real server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tests.helpers.apiserver import RunningApiServer


@pytest.fixture(scope="module")
def api(server: RunningApiServer) -> Iterator[client.ApiClient]:
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(server.kubeconfig), client_configuration=cfg)
    with client.ApiClient(cfg) as c:
        yield c


def test_crud_and_conflict(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    cm = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm", labels={"src": "py"}), data={"k": "v"})
    created = v1.create_namespaced_config_map("default", cm)
    assert created.metadata.uid and created.metadata.creation_timestamp is not None
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_config_map("default", cm)
    assert e.value.status == 409 and e.value.reason == "Conflict"
    got = v1.read_namespaced_config_map("py-cm", "default")
    got.data = {"k": "v2"}
    updated = v1.replace_namespaced_config_map("py-cm", "default", got)
    assert updated.data == {"k": "v2"}
    got.data = {"k": "stale"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as e:
        v1.replace_namespaced_config_map("py-cm", "default", got)
    assert e.value.status == 409
    patched = v1.patch_namespaced_config_map("py-cm", "default", {"metadata": {"labels": {"extra": "1"}}})
    assert patched.metadata.labels == {"src": "py", "extra": "1"}
    v1.delete_namespaced_config_map("py-cm", "default")
    with pytest.raises(ApiException) as e:
        v1.read_namespaced_config_map("py-cm", "default")
    assert e.value.status == 404


def test_deployment_and_scale(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    dep: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "py-web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "py-web"}},
            "template": {
                "metadata": {"labels": {"app": "py-web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }
    d = apps.create_namespaced_deployment("default", dep)
    assert d.metadata.generation == 1 and d.spec.template.spec.containers[0].image_pull_policy
    s = apps.patch_namespaced_deployment_scale("py-web", "default", {"spec": {"replicas": 2}})
    assert s.spec.replicas == 2
    assert apps.read_namespaced_deployment("py-web", "default").spec.replicas == 2


def test_list_with_selectors(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    for i, tier in enumerate(["fe", "fe", "be"]):
        body = {
            "metadata": {"name": f"py-pod-{i}", "labels": {"tier": tier, "app": "py"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }
        v1.create_namespaced_pod("default", body)
    fe = v1.list_namespaced_pod("default", label_selector="app=py,tier=fe")
    assert sorted(p.metadata.name for p in fe.items) == ["py-pod-0", "py-pod-1"]
    one = v1.list_namespaced_pod("default", field_selector="metadata.name=py-pod-2")
    assert [p.metadata.name for p in one.items] == ["py-pod-2"]
    assert fe.metadata.resource_version


def test_watch_stream_from_resource_version(api: client.ApiClient) -> None:
    v1 = client.CoreV1Api(api)
    rv = v1.list_namespaced_config_map("default").metadata.resource_version
    v1.create_namespaced_config_map("default", {"metadata": {"name": "py-w1", "labels": {"w": "py"}}})
    v1.patch_namespaced_config_map("py-w1", "default", {"data": {"a": "1"}})
    v1.delete_namespaced_config_map("py-w1", "default")
    seen = []
    w = watch.Watch()
    for ev in w.stream(
        v1.list_namespaced_config_map, "default", label_selector="w=py", resource_version=rv, timeout_seconds=2
    ):
        seen.append((ev["type"], ev["object"].metadata.name))
    assert seen == [("ADDED", "py-w1"), ("MODIFIED", "py-w1"), ("DELETED", "py-w1")]
