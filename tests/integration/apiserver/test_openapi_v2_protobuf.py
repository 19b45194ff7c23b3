"""``/openapi/v2`` in gnostic protobuf, as kubectl 1.27 and 1.33 read it.

Decodes the served message with a small wire reader (field numbers of gnostic's
``openapiv2/OpenAPIv2.proto``) and checks what kube-openapi's ``pkg/util/proto`` reader would refuse
(a dangling ``$ref``, a ``$ref`` beside a ``type``, an array without exactly one ``items`` schema),
the parts cli-runtime's QueryParamVerifier reads (a kind's ``patch`` operation with its
``x-kubernetes-group-version-kind`` and the ``fieldValidation`` query parameter), the ETag/304
answer, and then real kubectl: ``explain --output=plaintext-openapiv2`` and the everyday verbs,
which all load the document.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.apiserver import RunningApiServer, start_apiserver
from tests.helpers.kubectl import kubectl_binary

PB_ACCEPT = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf"

Fields = dict[int, list[Any]]


def _varint(b: bytes, i: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return n, i


def read(b: bytes) -> Fields:
    """Field number → values (ints, or bytes for length-delimited fields), strictly (any junk fails)."""
    out: Fields = {}
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        field, wire = key >> 3, key & 7
        value: Any
        if wire == 0:
            value, i = _varint(b, i)
        elif wire == 1:
            value, i = b[i : i + 8], i + 8
        elif wire == 2:
            n, i = _varint(b, i)
            value, i = b[i : i + n], i + n
            assert i <= len(b), "truncated length-delimited field"
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.setdefault(field, []).append(value)
    assert i == len(b)
    return out


def named(b: bytes) -> tuple[str, bytes]:
    f = read(b)
    return f[1][0].decode(), f.get(2, [b""])[0]


def extensions(f: Fields, field: int) -> dict[str, Any]:
    out = {}
    for raw in f.get(field, []):
        name, value = named(raw)
        out[name] = json.loads(read(value)[2][0])  # Any.yaml: JSON text is YAML
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApiServer]:
    srv = start_apiserver(tmp_path_factory.mktemp("openapi-v2-pb"))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def document(server: RunningApiServer) -> Fields:
    with server.http() as c:
        r = c.get("/openapi/v2", headers={"Accept": PB_ACCEPT})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    return read(r.content)


def test_document_parses_the_way_kube_openapi_reads_it(document: Fields) -> None:
    assert document[1] == [b"2.0"]
    defs = dict(named(raw) for raw in read(document[9][0])[1])
    assert {"io.k8s.api.apps.v1.Deployment", "io.k8s.api.core.v1.PodSpec", "io.k8s.api.batch.v1.CronJob"} <= set(defs)

    def check(raw: bytes, where: str) -> None:
        s = read(raw)
        types = [t.decode() for t in read(s[22][0]).get(1, [])] if 22 in s else []
        if 1 in s:
            ref = s[1][0].decode()
            assert ref.startswith("#/definitions/") and ref.removeprefix("#/definitions/") in defs, (where, ref)
            assert not types and 25 not in s, f"{where}: a $ref beside a type or properties"
        if types == ["array"]:
            items = read(s[23][0]).get(1, []) if 23 in s else []
            assert len(items) == 1, f"{where}: an array needs exactly one items schema"
        assert len(types) <= 1, where
        for sub in s.get(23, []):
            for item in read(sub).get(1, []):
                check(item, where + "[]")
        for sub in s.get(21, []):
            for item in read(sub).get(1, []):
                check(item, where + "{}")
        for sub in s.get(25, []):
            for prop in read(sub).get(1, []):
                name, value = named(prop)
                check(value, f"{where}.{name}")
        for sub in s.get(24, []):
            check(sub, where + "&")

    for name, raw in defs.items():
        check(raw, name)

    deployment = read(defs["io.k8s.api.apps.v1.Deployment"])
    gvk = extensions(deployment, 31)["x-kubernetes-group-version-kind"]
    assert gvk == [{"group": "apps", "kind": "Deployment", "version": "v1"}]
    containers = dict(named(p) for p in read(read(defs["io.k8s.api.core.v1.PodSpec"])[25][0])[1])["containers"]
    ext = extensions(read(containers), 31)
    assert ext["x-kubernetes-patch-merge-key"] == "name" and ext["x-kubernetes-patch-strategy"] == "merge"
    strategy_type = dict(named(p) for p in read(read(defs["io.k8s.api.apps.v1.DeploymentStrategy"])[25][0])[1])
    enum = [json.loads(read(v)[2][0]) for v in read(strategy_type["type"]).get(20, [])]
    assert enum == ["Recreate", "RollingUpdate"]


def test_patch_operations_advertise_field_validation(document: Fields) -> None:
    # cli-runtime QueryParamVerifier: the patch operation tagged with the kind lists fieldValidation
    paths = dict(named(raw) for raw in read(document[8][0])[2])
    item = read(paths["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"])
    patch = read(item[8][0])
    assert extensions(patch, 13)["x-kubernetes-group-version-kind"] == {
        "group": "apps",
        "kind": "Deployment",
        "version": "v1",
    }
    query_names = []
    for p in patch[8]:
        param = read(read(p)[1][0])
        if 2 in param:
            non_body = read(param[2][0])
            if 3 in non_body:
                query_names.append(read(non_body[3][0])[4][0].decode())
    assert "fieldValidation" in query_names
    body = read(read(read(patch[8][0])[1][0])[1][0])  # the body parameter comes first
    assert body[2] == [b"body"] and body[3] == [b"body"]


def test_etag_and_not_modified(server: RunningApiServer) -> None:
    with server.http() as c:
        for accept in (PB_ACCEPT, "application/json"):
            first = c.get("/openapi/v2", headers={"Accept": accept})
            tag = first.headers["etag"]
            assert tag.startswith('"') and tag.endswith('"')
            again = c.get("/openapi/v2", headers={"Accept": accept, "If-None-Match": tag})
            assert again.status_code == 304 and again.content == b""
            assert c.get("/openapi/v2", headers={"Accept": accept, "If-None-Match": '"x"'}).status_code == 200
        pb = c.get("/openapi/v2", headers={"Accept": PB_ACCEPT}).headers["etag"]
        assert pb != c.get("/openapi/v2", headers={"Accept": "application/json"}).headers["etag"]


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      containers:
      - name: web
        image: {image}
        ports: [{{containerPort: 80}}]
"""


@pytest.mark.parametrize("version", ["1.27", "1.33"])
def test_kubectl_explain_v2_and_every_verb(server: RunningApiServer, tmp_path: Path, version: str) -> None:
    base = [kubectl_binary(version), "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(tmp_path / "cache")]

    def k(*args: str, input: str | None = None) -> str:
        r = subprocess.run([*base, *args], capture_output=True, text=True, input=input, timeout=60)
        assert r.returncode == 0, f"kubectl {version} {' '.join(args)}: {r.stderr}"
        return r.stdout

    out = k("explain", "deployment.spec.strategy.type", "--output=plaintext-openapiv2")
    assert "KIND:     Deployment" in out and "VERSION:  apps/v1" in out
    assert "FIELD:    type <string>" in out
    assert "Possible enum values:" in out and '`"Recreate"` Kill all existing pods' in out
    if version != "1.27":  # 1.28+ explain reads v3 by default: the enum is listed on its own too
        out = k("explain", "deployment.spec.strategy.type")
        assert "ENUM:\n    Recreate\n    RollingUpdate\n" in out and "Possible enum values:" in out
    kinds = k("api-resources", "-o", "name").split()
    assert len(kinds) > 30
    for resource in kinds:  # every kind kubelab serves has a v2 model kubectl can walk
        assert k("explain", resource, "--output=plaintext-openapiv2").startswith("KIND:"), resource
    out = k("explain", "pods.spec.containers.ports", "--output=plaintext-openapiv2")
    assert "containerPort\t<integer> -required-" in out
    ns = "v2pb-" + version.replace(".", "-")
    k("create", "namespace", ns)
    try:
        k("-n", ns, "apply", "-f", "-", input=DEPLOYMENT.format(replicas=1, image="nginx"))
        k("-n", ns, "apply", "-f", "-", input=DEPLOYMENT.format(replicas=2, image="nginx:2"))
        got = json.loads(k("-n", ns, "get", "deployment", "web", "-o", "json"))
        assert got["spec"]["replicas"] == 2
        assert got["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:2"
        k("-n", ns, "create", "configmap", "c", "--from-literal=a=b")
        assert "c " in k("-n", ns, "get", "configmaps")
        again = DEPLOYMENT.format(replicas=3, image="x")
        k("-n", ns, "apply", "--server-side", "--force-conflicts", "-f", "-", input=again)
        assert "deployment.apps/web" in k("-n", ns, "get", "deployments", "-o", "name")
        assert "DESCRIPTION" in k("explain", "services.spec")
    finally:
        k("delete", "namespace", ns, "--wait=false")
