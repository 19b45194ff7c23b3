"""The static-pod source: manifests → static pods with stable uids, mirror pods in the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controlplane.api import errors
from noded.staticpods import MIRROR_ANNOTATION, StaticPodSource, is_mirror

MANIFEST = """apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  containers: [{name: c, image: busybox}]
"""


class _Api:
    """The few ApiClient calls the source makes, over a dict of pods (a stateful fake)."""

    def __init__(self) -> None:
        self.pods: dict[str, dict[str, Any]] = {}

    def create(self, resource: Any, obj: dict[str, Any], namespace: str | None = None) -> dict[str, Any]:
        key = f"{namespace}/{obj['metadata']['name']}"
        if key in self.pods:
            raise errors.AlreadyExists(f"pods {key!r} already exists")
        self.pods[key] = {**obj, "metadata": {**obj["metadata"], "uid": f"mirror-{len(self.pods)}"}}
        return self.pods[key]

    def delete(self, resource: Any, name: str, namespace: str | None = None, **kw: Any) -> None:
        if self.pods.pop(f"{namespace}/{name}", None) is None:
            raise errors.NotFound(f"pods {name!r} not found")

    # the PodLister side (the agent's informer in real life)
    def get(self, key: str) -> dict[str, Any] | None:
        return self.pods.get(key)

    def list(self) -> list[dict[str, Any]]:
        return list(self.pods.values())


@pytest.fixture
def source(tmp_path: Path) -> tuple[StaticPodSource, _Api, list[tuple[str, Any]]]:
    api = _Api()
    changes: list[tuple[str, Any]] = []
    src = StaticPodSource(tmp_path, "kl-node1", api, api, lambda key, old: changes.append((key, old)))  # type: ignore[arg-type]
    return src, api, changes


def test_a_manifest_runs_as_a_static_pod_with_a_mirror(tmp_path: Path, source: Any) -> None:
    src, api, changes = source
    (tmp_path / "web.yaml").write_text(MANIFEST)
    src.sync()
    (key,) = src.pods
    assert key == "default/web-kl-node1" and changes == [(key, None)]
    pod = src.pods[key]
    assert is_mirror(pod) and pod["spec"]["nodeName"] == "kl-node1"
    mirror = api.pods[key]
    assert is_mirror(mirror) and mirror["metadata"]["uid"] != pod["metadata"]["uid"]
    # the same manifest again: same uid, nothing to do
    uid = pod["metadata"]["uid"]
    src.sync()
    assert src.pods[key]["metadata"]["uid"] == uid and len(changes) == 1


def test_a_changed_manifest_is_a_new_pod_and_a_new_mirror(tmp_path: Path, source: Any) -> None:
    src, api, changes = source
    (tmp_path / "web.yaml").write_text(MANIFEST)
    src.sync()
    old = src.pods["default/web-kl-node1"]
    (tmp_path / "web.yaml").write_text(MANIFEST.replace("busybox", "nginx"))
    src.sync()  # the outdated mirror is deleted first ...
    src.sync()  # ... and the new one created on the next pass
    new = src.pods["default/web-kl-node1"]
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    assert changes[-1] == ("default/web-kl-node1", old)  # the old static pod is torn down
    assert api.pods["default/web-kl-node1"]["metadata"]["annotations"][MIRROR_ANNOTATION] == (
        new["metadata"]["annotations"][MIRROR_ANNOTATION]
    )


def test_a_removed_manifest_removes_pod_and_mirror(tmp_path: Path, source: Any) -> None:
    src, api, changes = source
    (tmp_path / "web.yaml").write_text(MANIFEST)
    src.sync()
    (tmp_path / "web.yaml").unlink()
    src.sync()
    assert src.pods == {} and api.pods == {} and changes[-1][1] is not None


@pytest.mark.parametrize(
    "text",
    [
        "kind: Deployment\nmetadata: {name: x}\n",
        "kind: Pod\nmetadata: {}\nspec: {containers: [{name: c, image: i}]}\n",
        "kind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: c}]}\n",
        "kind: Pod\n  bad: [yaml\n",
    ],
)
def test_an_invalid_manifest_is_skipped_and_logged(
    tmp_path: Path, source: Any, text: str, caplog: pytest.LogCaptureFixture
) -> None:
    src, _api, _ = source
    (tmp_path / "bad.yaml").write_text(text)
    (tmp_path / "web.yaml").write_text(MANIFEST)
    src.sync()
    assert list(src.pods) == ["default/web-kl-node1"]
    assert any("bad.yaml is invalid, skipped" in r.getMessage() for r in caplog.records)
