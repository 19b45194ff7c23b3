"""Server-side apply through the real API server: managedFields, conflicts, force, pruning,
Update entries, and the same sequence with the real kubectl 1.27 and 1.33."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.helpers.apiserver import RunningApiServer
from tests.helpers.kubectl import kubectl_binary

CM = "/api/v1/namespaces/default/configmaps"
APPLY = {"Content-Type": "application/apply-patch+yaml"}
KUBECTLS = ["1.27", "1.33"]


def manifest(name: str, **data: str) -> str:
    return json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})


def owners(obj: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {(e["manager"], e["operation"]): e["fieldsV1"] for e in obj["metadata"].get("managedFields", [])}


@pytest.fixture
def cm_name(http: httpx.Client, request: pytest.FixtureRequest) -> Iterator[str]:
    raw = request.node.name.replace("_", "-").replace("[", "-").replace("]", "").replace(".", "")
    name = ("ssa-" + raw[5:45]).strip("-").lower()
    yield name
    http.delete(f"{CM}/{name}")


def apply(http: httpx.Client, name: str, body: str, manager: str | None = "kubectl", **params: str) -> httpx.Response:
    if manager is not None:
        params["fieldManager"] = manager
    return http.patch(f"{CM}/{name}", params=params, content=body, headers=APPLY)


def test_apply_records_managed_fields_and_conflicts(http: httpx.Client, cm_name: str) -> None:
    r = apply(http, cm_name, manifest(cm_name, key="a", other="b"))
    assert r.status_code == 201, r.text
    entry = r.json()["metadata"]["managedFields"][0]
    assert entry["manager"] == "kubectl" and entry["operation"] == "Apply" and entry["apiVersion"] == "v1"
    assert entry["fieldsType"] == "FieldsV1" and entry["fieldsV1"] == {"f:data": {"f:key": {}, "f:other": {}}}
    assert entry["time"].endswith("Z") and len(entry["time"]) == 20  # second resolution
    r = apply(http, cm_name, manifest(cm_name, key="z"), manager="other")
    assert r.status_code == 409
    status = r.json()
    assert status["reason"] == "Conflict"
    assert status["message"] == 'Apply failed with 1 conflict: conflict with "kubectl": .data.key'
    assert status["details"]["causes"] == [
        {"reason": "FieldManagerConflict", "message": 'conflict with "kubectl"', "field": ".data.key"}
    ]
    assert http.get(f"{CM}/{cm_name}").json()["data"]["key"] == "a"  # nothing changed
    r = apply(http, cm_name, manifest(cm_name, key="z"), manager="other", force="true")
    assert r.status_code == 200 and r.json()["data"] == {"key": "z", "other": "b"}
    assert owners(r.json()) == {
        ("kubectl", "Apply"): {"f:data": {"f:other": {}}},
        ("other", "Apply"): {"f:data": {"f:key": {}}},
    }
    r = apply(http, cm_name, manifest(cm_name, key="z"), manager="kubectl")  # drops "other" from its manifest
    assert r.status_code == 200 and r.json()["data"] == {"key": "z"}


def test_two_conflicts_are_listed(http: httpx.Client, cm_name: str) -> None:
    assert apply(http, cm_name, manifest(cm_name, a="1", b="1")).status_code == 201
    r = apply(http, cm_name, manifest(cm_name, a="2", b="2"), manager="other")
    assert r.status_code == 409
    assert r.json()["message"] == 'Apply failed with 2 conflicts: conflicts with "kubectl":\n- .data.a\n- .data.b'


def test_apply_needs_a_field_manager(http: httpx.Client, cm_name: str) -> None:
    r = apply(http, cm_name, manifest(cm_name, a="1"), manager=None)
    assert r.status_code == 422
    assert r.json()["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: fieldManager: Required value: is required for apply patch'
    )
    assert http.get(f"{CM}/{cm_name}").status_code == 404


def test_force_is_only_for_apply(http: httpx.Client, cm_name: str) -> None:
    assert http.post(CM, json={"metadata": {"name": cm_name}}).status_code == 201
    r = http.patch(
        f"{CM}/{cm_name}",
        params={"force": "true"},
        content=b'{"data":{"a":"1"}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert r.status_code == 422
    assert r.json()["message"] == (
        'PatchOptions.meta.k8s.io "" is invalid: force: Forbidden: may not be specified for non-apply patch'
    )
    assert "data" not in http.get(f"{CM}/{cm_name}").json()


def test_writers_are_recorded_as_update_managers(http: httpx.Client, cm_name: str) -> None:
    r = http.post(
        CM,
        json={"metadata": {"name": cm_name}, "data": {"a": "1"}},
        headers={"User-Agent": "kubectl-create/v1.33.0 (linux/amd64) kubernetes/abc"},
    )
    assert r.status_code == 201
    assert owners(r.json()) == {("kubectl-create", "Update"): {"f:data": {".": {}, "f:a": {}}}}
    r = http.patch(
        f"{CM}/{cm_name}",
        params={"fieldManager": "editor"},
        content=b'{"data":{"a":"2","b":"3"}}',
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert owners(r.json()) == {
        ("kubectl-create", "Update"): {"f:data": {}},  # still owns the map itself
        ("editor", "Update"): {"f:data": {"f:a": {}, "f:b": {}}},
    }
    r = apply(http, cm_name, manifest(cm_name, a="9"))
    assert r.json()["message"] == 'Apply failed with 1 conflict: conflict with "editor" using v1: .data.a'
    # a client may reset managedFields with an empty list
    obj = http.get(f"{CM}/{cm_name}").json()
    obj["metadata"]["managedFields"] = []
    r = http.put(f"{CM}/{cm_name}", json=obj, params={"fieldManager": "editor"})
    assert r.status_code == 200 and "managedFields" not in r.json()["metadata"]


def test_bad_managed_fields_are_refused(http: httpx.Client, cm_name: str) -> None:
    assert http.post(CM, json={"metadata": {"name": cm_name}}).status_code == 201
    obj = http.get(f"{CM}/{cm_name}").json()
    obj["metadata"]["managedFields"] = [{"manager": "x", "operation": "Delete"}]
    r = http.put(f"{CM}/{cm_name}", json=obj)
    assert r.status_code == 422 and "metadata.managedFields" in r.json()["message"]


# -- real kubectl ---------------------------------------------------------------------------


@pytest.fixture(params=KUBECTLS, ids=["1.27", "1.33"])
def kubectl(request: pytest.FixtureRequest, server: RunningApiServer, tmp_path: Path) -> Any:
    binary = kubectl_binary(request.param)

    def run(*args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [binary, "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(tmp_path / "cache"), *args]
        return subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=60)

    return run


def cm_yaml(name: str, **data: str) -> str:
    return yaml.safe_dump({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})


def test_kubectl_server_side_apply_sequence(kubectl: Any, http: httpx.Client, cm_name: str) -> None:
    r = kubectl("apply", "--server-side", "-f", "-", input=cm_yaml(cm_name, key="a", other="b"))
    assert (r.returncode, r.stdout) == (0, f"configmap/{cm_name} serverside-applied\n"), r.stderr
    r = kubectl("apply", "--server-side", "--field-manager=other", "-f", "-", input=cm_yaml(cm_name, key="z"))
    assert r.returncode == 1
    assert r.stderr.startswith('error: Apply failed with 1 conflict: conflict with "kubectl": .data.key\n')
    r = kubectl(
        "apply",
        "--server-side",
        "--field-manager=other",
        "--force-conflicts",
        "-f",
        "-",
        input=cm_yaml(cm_name, key="z"),
    )
    assert r.returncode == 0, r.stderr
    r = kubectl("apply", "--server-side", "-f", "-", input=cm_yaml(cm_name, key="z"))  # drops "other"
    assert r.returncode == 0, r.stderr
    r = kubectl("get", "cm", cm_name, "-o", "yaml", "--show-managed-fields")
    got = yaml.safe_load(r.stdout)
    assert got["data"] == {"key": "z"}
    fields = [(e["manager"], e["operation"], e["fieldsV1"]) for e in got["metadata"]["managedFields"]]
    assert sorted(fields, key=lambda f: f[0]) == [
        ("kubectl", "Apply", {"f:data": {"f:key": {}}}),
        ("other", "Apply", {"f:data": {"f:key": {}}}),
    ]
    plain = yaml.safe_load(kubectl("get", "cm", cm_name, "-o", "yaml").stdout)
    assert "managedFields" not in plain["metadata"]  # kubectl hides them without the flag


def test_kubectl_client_side_apply_upgrades_to_server_side(kubectl: Any, http: httpx.Client, cm_name: str) -> None:
    doc = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm_name, "labels": {"app": "x"}}}
    doc["data"] = {"a": "1", "b": "2"}
    r = kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    assert r.returncode == 0, r.stderr
    created = http.get(f"{CM}/{cm_name}").json()
    assert ("kubectl-client-side-apply", "Update") in owners(created)
    del doc["data"]["b"]
    r = kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump(doc))
    assert r.returncode == 0, r.stderr
    after = http.get(f"{CM}/{cm_name}").json()
    assert after["data"] == {"a": "1"}  # the field client-side apply owned and the manifest dropped is gone
    assert after["metadata"]["labels"] == {"app": "x"}
    managers = owners(after)
    assert ("kubectl-client-side-apply", "Update") not in managers
    assert managers[("kubectl", "Apply")] == {"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:app": {}}}}


def test_status_writes_are_their_own_entries(http: httpx.Client) -> None:
    deploys = "/apis/apps/v1/namespaces/default/deployments"
    body = {
        "metadata": {"name": "ssa-status"},
        "spec": {
            "selector": {"matchLabels": {"app": "s"}},
            "template": {"metadata": {"labels": {"app": "s"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
        },
        "status": {"replicas": 3},
    }
    try:
        r = http.post(deploys, json=body, params={"fieldManager": "maker"})
        assert r.status_code == 201
        (entry,) = r.json()["metadata"]["managedFields"]
        assert "f:status" not in entry["fieldsV1"] and "subresource" not in entry  # status is reset on create
        r = http.patch(
            f"{deploys}/ssa-status/status",
            params={"fieldManager": "kube-controller-manager"},
            content=b'{"status":{"replicas":1}}',
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code == 200
        status_entry = next(e for e in r.json()["metadata"]["managedFields"] if e.get("subresource") == "status")
        assert status_entry["manager"] == "kube-controller-manager" and status_entry["operation"] == "Update"
        assert status_entry["fieldsV1"] == {"f:status": {"f:replicas": {}}}  # status is a Go struct: no "."
    finally:
        http.delete(f"{deploys}/ssa-status")
