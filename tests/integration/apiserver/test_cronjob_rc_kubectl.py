"""CronJob and ReplicationController through the real server with real kubectl 1.27 and 1.33:
create cronjob, create job --from=cronjob, get (tables), explain, describe, get/scale rc; the
CronJob controller in ``kubelab controlplane`` creating a Job on schedule."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.apiserver import RunningApiServer, start_apiserver
from tests.helpers.kubectl import kubectl_binary
from tests.helpers.wait import wait_for

KUBECTLS = ("1.27", "1.33")

RC = """
apiVersion: v1
kind: ReplicationController
metadata:
  name: {name}
spec:
  replicas: 2
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: web
        image: nginx
"""


class Kubectl:
    def __init__(self, binary: str, server: RunningApiServer, cache: Path) -> None:
        self.base = [binary, "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(cache)]

    def __call__(self, *args: str, input: str | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run([*self.base, *args], capture_output=True, text=True, input=input, timeout=60)
        if ok:
            assert r.returncode == 0, f"kubectl {' '.join(args)} failed: {r.stderr}"
        return r

    def json(self, *args: str) -> Any:
        return json.loads(self(*args, "-o", "json").stdout)


@pytest.fixture(params=sorted(KUBECTLS))
def k(request: pytest.FixtureRequest, server: RunningApiServer, tmp_path: Path) -> Kubectl:
    return Kubectl(kubectl_binary(request.param), server, tmp_path / "cache")


@pytest.fixture
def ns(k: Kubectl, request: pytest.FixtureRequest) -> Iterator[str]:
    # a bare API server has no namespace controller, so every test gets a name of its own
    name = f"kinds-{request.node.originalname.removeprefix('test_')[:30]}-{request.node.callspec.id}".replace(".", "")
    name = name.replace("_", "-")
    k("create", "namespace", name)
    try:
        yield name
    finally:
        k("delete", "namespace", name, "--wait=false", ok=False)


def test_create_cronjob_get_describe_and_job_from_it(k: Kubectl, ns: str) -> None:
    out = k("-n", ns, "create", "cronjob", "hello", "--image=busybox", "--schedule=*/1 * * * *").stdout
    assert out.strip() == "cronjob.batch/hello created"
    cj = k.json("-n", ns, "get", "cronjob", "hello")
    assert cj["spec"]["concurrencyPolicy"] == "Allow" and cj["spec"]["successfulJobsHistoryLimit"] == 3
    lines = k("-n", ns, "get", "cj").stdout.splitlines()
    assert lines[0].split() == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    assert lines[1].split()[:6] == ["hello", "*/1", "*", "*", "*", "*"]
    assert lines[1].split()[6:10] == ["<none>", "False", "0", "<none>"]
    described = k("-n", ns, "describe", "cronjob", "hello").stdout
    assert re.search(r"^Schedule:\s+\*/1 \* \* \* \*$", described, re.M), described
    assert re.search(r"^Concurrency Policy:\s+Allow$", described, re.M), described

    out = k("-n", ns, "create", "job", "manual", "--from=cronjob/hello").stdout
    assert out.strip() == "job.batch/manual created"
    job = k.json("-n", ns, "get", "job", "manual")
    assert job["metadata"]["annotations"]["cronjob.kubernetes.io/instantiate"] == "manual"
    owner = job["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("CronJob", "hello", cj["metadata"]["uid"])


def test_cronjob_validation_messages(k: Kubectl, ns: str) -> None:
    r = k("-n", ns, "create", "cronjob", "bad", "--image=busybox", "--schedule=* * *", ok=False)
    assert r.returncode != 0
    # kubectl create cronjob prefixes the server's Status message with its own words
    assert r.stderr.strip() == (
        'error: failed to create cronjob: CronJob "bad" is invalid: spec.schedule: Invalid value: "* * *": '
        "expected exactly 5 fields, found 3: [* * *]"
    )


def test_explain_cronjob(k: Kubectl) -> None:
    out = k("explain", "cronjob.spec.concurrencyPolicy").stdout
    assert "KIND:" in out and "CronJob" in out
    assert "Allow" in out and "Forbid" in out and "Replace" in out


def test_rc_get_scale_describe(k: Kubectl, ns: str) -> None:
    k("-n", ns, "apply", "-f", "-", input=RC.format(name="web"))
    rc = k.json("-n", ns, "get", "rc", "web")
    assert rc["spec"]["selector"] == {"app": "web"} and rc["status"]["replicas"] == 0
    lines = k("-n", ns, "get", "rc").stdout.splitlines()
    assert lines[0].split() == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert lines[1].split()[:4] == ["web", "2", "0", "0"]
    assert k("-n", ns, "scale", "rc", "web", "--replicas=4").stdout.strip() == "replicationcontroller/web scaled"
    assert k.json("-n", ns, "get", "rc", "web")["spec"]["replicas"] == 4
    described = k("-n", ns, "describe", "rc", "web").stdout
    assert re.search(r"^Selector:\s+app=web$", described, re.M), described
    assert re.search(r"^Replicas:\s+\d+ current / 4 desired$", described, re.M), described


def test_cronjob_controller_runs_jobs(tmp_path: Path) -> None:
    srv = start_apiserver(tmp_path, store="sqlite", controlplane=True)
    try:
        with srv.http() as c:
            cj = {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": {"name": "tick"},
                "spec": {
                    "schedule": "@every 2s",
                    "jobTemplate": {
                        "spec": {
                            "template": {
                                "spec": {
                                    "containers": [{"name": "c", "image": "busybox"}],
                                    "restartPolicy": "OnFailure",
                                }
                            }
                        }
                    },
                },
            }
            assert c.post("/apis/batch/v1/namespaces/default/cronjobs", json=cj).status_code == 201

            def jobs() -> list[dict[str, Any]]:
                items: list[dict[str, Any]] = c.get("/apis/batch/v1/namespaces/default/jobs").json()["items"]
                return items

            made = wait_for(jobs, timeout=30, message="the CronJob controller created a Job")
            job = made[0]
            assert job["metadata"]["name"].startswith("tick-")
            assert job["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
            assert "batch.kubernetes.io/cronjob-scheduled-timestamp" in job["metadata"]["annotations"]

            def status() -> dict[str, Any]:
                st: dict[str, Any] = c.get("/apis/batch/v1/namespaces/default/cronjobs/tick").json().get("status", {})
                return st if st.get("lastScheduleTime") and st.get("active") else {}

            st = wait_for(status, timeout=30, message="cronjob status.active and lastScheduleTime")
            assert job["metadata"]["name"] in [r["name"] for r in st["active"]]
    finally:
        srv.stop()


def test_openapi_v2_json(server: RunningApiServer) -> None:
    with server.http() as c:
        r = c.get("/openapi/v2", headers={"Accept": "application/json"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        doc = r.json()
        assert doc["swagger"] == "2.0"
        cronjob = doc["definitions"]["io.k8s.api.batch.v1.CronJob"]
        assert cronjob["x-kubernetes-group-version-kind"] == [{"group": "batch", "kind": "CronJob", "version": "v1"}]
        assert cronjob["properties"]["spec"]["$ref"] == "#/definitions/io.k8s.api.batch.v1.CronJobSpec"
        strategy = doc["definitions"]["io.k8s.api.apps.v1.DeploymentStrategy"]["properties"]["type"]
        assert strategy["enum"] == ["Recreate", "RollingUpdate"]
        post = doc["paths"]["/api/v1/namespaces/{namespace}/replicationcontrollers"]["post"]
        assert post["parameters"][0]["in"] == "body" and post["x-kubernetes-action"] == "post"
        # kubectl's protobuf request gets the same document in gnostic's protobuf encoding
        pb = c.get("/openapi/v2", headers={"Accept": "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"})
        assert pb.status_code == 200 and pb.headers["content-type"].startswith("application/com.github.proto-openapi")


def test_get_componentstatuses(k: Kubectl, server: RunningApiServer) -> None:
    from datetime import UTC, datetime

    name = "kube-scheduler"
    renewed = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-system"},
        "spec": {"holderIdentity": "test", "leaseDurationSeconds": 300, "renewTime": renewed},
    }
    with server.http() as c:
        created = c.post("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases", json=lease)
        assert created.status_code == 201, created.text
        try:
            r = k("get", "cs")
            assert "Warning: v1 ComponentStatus is deprecated in v1.19+" in r.stderr
            lines = [line.split() for line in r.stdout.splitlines()]
            assert lines[0] == ["NAME", "STATUS", "MESSAGE", "ERROR"]
            assert lines[1] == ["scheduler", "Healthy", "ok"]
            assert lines[2][:2] == ["controller-manager", "Unhealthy"]
            assert lines[3][:2] == ["memory", "Healthy"]
            one = k.json("get", "componentstatus", "scheduler")
            assert one["kind"] == "ComponentStatus" and one["conditions"][0]["status"] == "True"
            missing = k("get", "cs", "nope", ok=False)
            assert 'componentstatuses "nope" not found' in missing.stderr
            refused = c.delete("/api/v1/componentstatuses/scheduler")
            assert refused.status_code == 405
        finally:
            c.delete(f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{name}")


def test_explain_shows_enums(k: Kubectl, request: pytest.FixtureRequest) -> None:
    out = k("explain", "deployment.spec.strategy.type").stdout
    assert "FIELD: type <string>" in out
    if request.node.callspec.id != "1.27":  # kubectl's plaintext template prints ENUM: since 1.28
        assert "ENUM:\n    Recreate\n    RollingUpdate" in out, out
