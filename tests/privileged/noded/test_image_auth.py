"""Pulling as from Docker Hub: a real registry behind token auth, private repositories, image
indexes with platform selection, pinned digests; then the same through a real API server and noded.

The registry is Debian's docker-registry (distribution 2.8) configured with ``auth: token``; the
token server is ``tests.helpers.tokenserver`` (anonymous pull tokens for ``library/*``, anything for
the user ``alice``). Images: the lab's busybox as ``library/busybox`` and ``private/busybox``, and
a two-platform index (amd64 + arm64, each with ``/marker`` naming its architecture) as
``library/multi`` and ``private/multi``. Both servers are stopped at module teardown.
"""

from __future__ import annotations

import base64
import gzip
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from noded.images.credentials import PullSecrets
from noded.images.platform import Platform, host_platform
from noded.images.store import ImagePullError, ImageStore
from tests.helpers.apiserver import start_apiserver
from tests.helpers.netns import NetnsFactory
from tests.helpers.registry import Registry, build_multiarch_layout, start_registry
from tests.helpers.tokenserver import start_token_server
from tests.helpers.wait import wait_for
from tests.privileged.noded.test_noded_api import NODE, REPO, Cluster

USER, PASSWORD = "alice", "s3cret"


@pytest.fixture(scope="module")
def multi_layout(tmp_path_factory: pytest.TempPathFactory, lab_images: dict[str, Path]) -> tuple[Path, dict[str, str]]:
    dest = tmp_path_factory.mktemp("multi") / "layout"
    return dest, build_multiarch_layout(lab_images["busybox"], dest)


@pytest.fixture(scope="module")
def auth_registry(
    tmp_path_factory: pytest.TempPathFactory, lab_images: dict[str, Path], multi_layout: tuple[Path, dict[str, str]]
) -> Iterator[Registry]:
    tmp = tmp_path_factory.mktemp("auth-registry")
    ts = start_token_server(tmp / "token", users={USER: PASSWORD}, public=["library/*"])
    reg = start_registry(tmp, auth=ts)  # owns ts from here on
    try:
        creds = (USER, PASSWORD)
        for repo in ("library/busybox", "private/busybox"):
            reg.push(lab_images["busybox"], repo, creds=creds)
        for repo in ("library/multi", "private/multi"):
            reg.push(multi_layout[0], repo, creds=creds, all_platforms=True)
        yield reg
    finally:
        reg.stop()


def kubectl_secret(server: str, user: str = USER, password: str = PASSWORD) -> dict[str, Any]:
    """The Secret exactly as ``kubectl create secret docker-registry`` makes it (offline)."""
    out = subprocess.run(
        [
            "kubectl", "create", "secret", "docker-registry", "regcred", f"--docker-server={server}",
            f"--docker-username={user}", f"--docker-password={password}", "--dry-run=client", "-o", "json",
        ],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    secret: dict[str, Any] = json.loads(out)
    return secret


def pod_secrets(secret: dict[str, Any] | None) -> PullSecrets:
    pod = {"metadata": {"name": "p", "namespace": "default"}, "spec": {"imagePullSecrets": [{"name": "regcred"}]}}
    return PullSecrets(pod, lambda kind, ns, name: secret if (kind, name) == ("secret", "regcred") else None)


def new_store(tmp_path: Path, reg: Registry, platform: Platform | None = None) -> ImageStore:
    return ImageStore(tmp_path / "store", insecure_registries=[reg.address], platform=platform)


def test_registry_challenges_like_docker_hub_and_anonymous_pulls_get_a_token(
    tmp_path: Path, auth_registry: Registry
) -> None:
    ts = auth_registry.token_server
    assert ts is not None
    res = httpx.get(f"http://{auth_registry.address}/v2/library/busybox/manifests/latest", timeout=5)
    assert res.status_code == 401
    challenge = res.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    assert f'realm="{ts.realm}"' in challenge and f'service="{ts.service}"' in challenge
    assert 'scope="repository:library/busybox:pull"' in challenge
    ts.requests.clear()
    img = new_store(tmp_path, auth_registry).ensure(f"{auth_registry.address}/library/busybox:latest")
    assert img.config["config"]["Cmd"] == ["sh"]
    assert (None, ["repository:library/busybox:pull"]) in ts.requests  # anonymous, pull only


def test_private_repository_needs_the_pull_secret(tmp_path: Path, auth_registry: Registry) -> None:
    ts = auth_registry.token_server
    assert ts is not None
    ref = f"{auth_registry.address}/private/busybox:latest"
    store = new_store(tmp_path, auth_registry)
    with pytest.raises(ImagePullError) as info:
        store.ensure(ref)
    assert "authentication required" in str(info.value) and info.value.reason == "ErrImagePull"
    # A pod without imagePullSecrets, or whose secret is missing, pulls anonymously: same answer.
    with pytest.raises(ImagePullError, match="authentication required"):
        store.ensure(ref, "IfNotPresent", pod_secrets(None))
    # A wrong password is refused by the token server.
    with pytest.raises(ImagePullError) as info:
        store.ensure(ref, "IfNotPresent", pod_secrets(kubectl_secret(auth_registry.address, password="nope")))
    assert "unauthorized" in str(info.value).lower()
    assert "nope" not in str(info.value)
    # The secret kubectl makes works; the token server saw alice, and no auth file is left.
    ts.requests.clear()
    img = store.ensure(ref, "IfNotPresent", pod_secrets(kubectl_secret(auth_registry.address)))
    assert img.repository == f"{auth_registry.address}/private/busybox"
    assert (USER, ["repository:private/busybox:pull"]) in ts.requests
    assert list((tmp_path / "store" / "tmp").iterdir()) == []
    # Always re-resolves the tag with the same credentials (and finds it unchanged).
    store.resolve_ttl = 0
    n = len(ts.requests)
    assert store.ensure(ref, "Always", pod_secrets(kubectl_secret(auth_registry.address))).image_id == img.image_id
    assert any(user == USER for user, _ in ts.requests[n:])


def test_index_pulls_the_host_platform_with_gzip_layers(
    tmp_path: Path, auth_registry: Registry, multi_layout: tuple[Path, dict[str, str]]
) -> None:
    _, digests = multi_layout
    host = host_platform()
    assert host.architecture == "amd64", "this test expects an amd64 host (the index has amd64 and arm64)"
    ref = f"{auth_registry.address}/library/multi:latest"
    store = new_store(tmp_path, auth_registry)
    img = store.ensure(ref)
    assert img.manifest_digest == digests["amd64"]
    assert img.repo_digest == digests["index"]
    assert img.status_image_id == f"{auth_registry.address}/library/multi@{digests['index']}"
    assert img.config["architecture"] == "amd64"
    assert (
        img.image_id
        == json.loads((tmp_path / "store" / "blobs" / "sha256" / digests["amd64"][7:]).read_text())["config"]["digest"]
    )
    assert (store.rootfs_layers(img)[0] / "marker").read_text() == "amd64\n"
    # The layers came over as gzip, as the manifest says, and were verified against its digests.
    manifest = json.loads((tmp_path / "store" / "blobs" / "sha256" / digests["amd64"][7:]).read_text())
    for layer in manifest["layers"]:
        assert layer["mediaType"].endswith("tar+gzip")
        blob = tmp_path / "store" / "blobs" / "sha256" / layer["digest"][7:]
        with open(blob, "rb") as f:
            assert f.read(2) == b"\x1f\x8b"
        gzip.decompress(blob.read_bytes())
    # The arm64 entry exists and is different: a store for an arm64 node takes it.
    arm = new_store(tmp_path / "arm", auth_registry, Platform("linux", "arm64")).ensure(ref)
    assert arm.manifest_digest == digests["arm64"] and arm.config["architecture"] == "arm64"
    assert arm.image_id != img.image_id and arm.repo_digest == img.repo_digest
    # No entry for the platform: a clear reason naming what there is.
    with pytest.raises(ImagePullError, match=r"no match for platform linux/s390x.*linux/amd64, linux/arm64/v8"):
        new_store(tmp_path / "s390x", auth_registry, Platform("linux", "s390x")).ensure(ref)


def test_digest_pinned_references(
    tmp_path: Path, auth_registry: Registry, multi_layout: tuple[Path, dict[str, str]]
) -> None:
    _, digests = multi_layout
    repo = f"{auth_registry.address}/library/multi"
    store = new_store(tmp_path, auth_registry)
    by_index = store.ensure(f"{repo}@{digests['index']}", "Always")
    assert by_index.manifest_digest == digests["amd64"] and by_index.repo_digest == digests["index"]
    by_manifest = store.ensure(f"{repo}:whatever@{digests['amd64']}")  # the digest wins over the tag
    assert by_manifest.image_id == by_index.image_id
    wrong = "sha256:" + "0" * 64
    with pytest.raises(ImagePullError) as info:
        store.ensure(f"{repo}@{wrong}")
    assert "manifest unknown" in str(info.value) and wrong in str(info.value)
    assert store.get(f"{repo}@{wrong}") is None


def test_pull_policies_against_a_moving_tag(
    tmp_path: Path, auth_registry: Registry, lab_images: dict[str, Path], multi_layout: tuple[Path, dict[str, str]]
) -> None:
    creds = (USER, PASSWORD)
    ref = auth_registry.push(lab_images["busybox"], "private/moving", creds=creds) + ":latest"
    store = new_store(tmp_path, auth_registry)
    secret = kubectl_secret(auth_registry.address)
    first = store.ensure(ref, "IfNotPresent", pod_secrets(secret))
    auth_registry.push(multi_layout[0], "private/moving", creds=creds, all_platforms=True)  # the tag moves
    assert store.ensure(ref, "IfNotPresent", pod_secrets(secret)).image_id == first.image_id
    assert store.ensure(ref, "Never").image_id == first.image_id
    moved = store.ensure(ref, "Always", pod_secrets(secret))
    assert moved.image_id != first.image_id and moved.manifest_digest == multi_layout[1]["amd64"]
    # Always checks the registry with the pod's own credentials: a pod without the secret does not
    # ride on the check another pod just made (the resolution cache is per credentials).
    with pytest.raises(ImagePullError, match="authentication required"):
        store.ensure(ref, "Always")
    assert store.ensure(ref, "Always", pod_secrets(secret)).image_id == moved.image_id


# ---- through the API server and noded ---------------------------------------------------------


@pytest.fixture
def auth_cluster(tmp_path: Path, netns: NetnsFactory, auth_registry: Registry) -> Iterator[Cluster]:
    from controlplane.api.registry import NODES

    api = start_apiserver(tmp_path)
    c = Cluster(tmp_path, api, netns("node"), auth_registry, "reference")
    try:
        c.start_noded()
        wait_for(lambda: c.client.get(NODES, NODE), 30, message="node registered")
        c.client.patch(NODES, NODE, {"spec": {"podCIDR": "10.244.9.0/24", "podCIDRs": ["10.244.9.0/24"]}})
        wait_for(lambda: (c.cni_conf / "10-kubelab.conflist").exists(), 30, message="CNI config written")
        yield c
    finally:
        c.stop_noded()
        subprocess.run(
            [
                sys.executable,
                "-m", "lab", "noded", "cleanup", "--root-dir", str(c.root), "--log-root", str(c.log_root),
                "--node-netns", c.node_ns, "--cni-conf-dir", str(c.cni_conf), "--cni-bin-dir", "/usr/lib/cni",
            ],
            cwd=REPO, capture_output=True, check=False,
        )  # fmt: skip
        c.client.close()
        api.stop()


def _waiting(p: dict[str, Any]) -> dict[str, Any]:
    cs = (p.get("status") or {}).get("containerStatuses") or [{}]
    w: dict[str, Any] = (cs[0].get("state") or {}).get("waiting") or {}
    return w


def test_pods_pull_private_and_multiplatform_images_with_image_pull_secrets(
    auth_cluster: Cluster, multi_layout: tuple[Path, dict[str, str]]
) -> None:
    c = auth_cluster
    _, digests = multi_layout
    addr = c.registry.address
    private = f"{addr}/private/multi:latest"
    cmd = ["sh", "-c", "cat /marker; sleep 1000"]
    # Without a pull secret: ErrImagePull, then ImagePullBackOff, with the registry's reason.
    c.create("nosecret", [{"name": "c", "image": private, "command": cmd}])
    w = _waiting(c.wait_pod("nosecret", lambda p: _waiting(p).get("reason") == "ImagePullBackOff"))
    assert "authentication required" in w["message"]
    assert any(e["reason"] == "Failed" and "authentication required" in e["message"] for e in c.events("nosecret"))
    # Naming a secret that does not exist: an event says so, and the pull goes on without it.
    c.create("gonesecret", [{"name": "c", "image": private, "command": cmd}], imagePullSecrets=[{"name": "gone"}])
    w = _waiting(c.wait_pod("gonesecret", lambda p: _waiting(p).get("reason") in ("ErrImagePull", "ImagePullBackOff")))
    assert "authentication required" in w["message"]
    missing = [e for e in c.events("gonesecret") if e["reason"] == "FailedToRetrieveImagePullSecret"]
    assert missing and missing[0]["type"] == "Warning" and "(gone)" in missing[0]["message"]
    # The secret as kubectl makes it, then a pod that names it.
    c.kubectl(
        "create", "secret", "docker-registry", "regcred", f"--docker-server={addr}",
        f"--docker-username={USER}", f"--docker-password={PASSWORD}",
    )  # fmt: skip
    c.create(
        "withsecret",
        [{"name": "c", "image": private, "command": cmd, "imagePullPolicy": "Always"}],
        imagePullSecrets=[{"name": "regcred"}],
    )
    p = c.wait_pod("withsecret", lambda p: (p.get("status") or {}).get("phase") == "Running")
    cs = p["status"]["containerStatuses"][0]
    assert cs["image"] == private
    assert cs["imageID"] == f"{addr}/private/multi@{digests['index']}"
    logs = wait_for(lambda: (out := c.kubectl("logs", "withsecret").stdout) and out, 15, message="logs")
    assert logs.strip() == "amd64"  # the host's entry of the index ran
    assert any(e["reason"] == "Pulled" for e in c.events("withsecret"))
    # Never with the image now present on the node runs it without asking the registry...
    c.create("never", [{"name": "c", "image": private, "command": cmd, "imagePullPolicy": "Never"}])
    c.wait_pod("never", lambda p: (p.get("status") or {}).get("phase") == "Running")
    # ...and with an image that is absent waits with ErrImageNeverPull.
    absent = f"{addr}/private/busybox:latest"
    c.create("neverabsent", [{"name": "c", "image": absent, "imagePullPolicy": "Never"}])
    w = _waiting(c.wait_pod("neverabsent", lambda p: _waiting(p).get("reason") == "ErrImageNeverPull"))
    assert "not present with pull policy of Never" in w["message"]
    # It stays so (no pull happens, so no back-off), and the pod stays Pending.
    with pytest.raises(AssertionError):
        wait_for(
            lambda: _waiting(c.pod("neverabsent")).get("reason") != "ErrImageNeverPull", 2, message="reason change"
        )
    # The secret's password never reaches noded's log.
    assert PASSWORD not in (c.tmp / "noded.log").read_text(errors="replace")
    assert base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() not in (c.tmp / "noded.log").read_text(
        errors="replace"
    )
