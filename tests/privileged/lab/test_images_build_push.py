"""The tutorial images end to end without a lab: built offline, pushed under every upstream name
to a real registry (docker-registry on loopback), then pulled by noded's image store through a
containerd-style hosts.toml that names that registry as the docker.io mirror."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lab import images
from noded.images.store import ImageStore
from tests.helpers.registry import Registry, start_registry


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return images.build_lab_images(tmp_path_factory.mktemp("tutorial-images"), images.IMAGE_NAMES)


@pytest.fixture(scope="module")
def pushed(tmp_path_factory: pytest.TempPathFactory, layouts: dict[str, Path]) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("tutorial-registry"))
    try:
        images.push_images(reg.address, layouts)
        yield reg
    finally:
        reg.stop()


def manifest_digest(reg: Registry, name: str) -> str:
    repo, tag = name.rsplit(":", 1)
    r = httpx.get(
        f"http://{reg.address}/v2/{repo}/manifests/{tag}", headers={"Accept": ", ".join(images.MANIFEST_TYPES)}
    )
    assert r.status_code == 200, (name, r.text)
    return str(r.headers["Docker-Content-Digest"])


def test_every_name_is_served_and_names_the_same_image(pushed: Registry) -> None:
    for image, names in images.REPOSITORIES.items():
        digests = {manifest_digest(pushed, n) for n in names}
        assert len(digests) == 1, (image, digests)


def test_pushing_again_is_idempotent(pushed: Registry, layouts: dict[str, Path]) -> None:
    before = manifest_digest(pushed, "library/nginx:1.15.4")
    images.push_images(pushed.address, {"nginx": layouts["nginx"]})
    assert manifest_digest(pushed, "library/nginx:1.15.4") == before


def test_builds_are_cached(layouts: dict[str, Path]) -> None:
    out = layouts["nginx"].parent
    stamps = {n: (p / ".kubelab-hash").stat().st_mtime_ns for n, p in layouts.items()}
    again = images.build_lab_images(out, images.IMAGE_NAMES)
    assert {n: (p / ".kubelab-hash").stat().st_mtime_ns for n, p in again.items()} == stamps


def test_nginx_and_python_pull_through_the_mirror_under_their_upstream_names(tmp_path: Path, pushed: Registry) -> None:
    certs = tmp_path / "certs.d"
    (certs / "docker.io").mkdir(parents=True)
    # As the lab writes it, but the upstream server may do nothing here: no packet leaves the machine.
    (certs / "docker.io" / "hosts.toml").write_text(
        'server = "https://registry-1.docker.io"\ncapabilities = []\n'
        f'[host."http://{pushed.address}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    store = ImageStore(tmp_path / "store", registry_config_path=certs)
    nginx = store.ensure("nginx:1.15.4")
    assert nginx.ref == "docker.io/library/nginx:1.15.4"
    assert nginx.status_image_id == "docker.io/library/nginx@" + manifest_digest(pushed, "library/nginx:1.15.4")
    assert nginx.config["config"]["Cmd"] == ["nginx", "-g", "daemon off;"]
    assert nginx.config["config"]["ExposedPorts"] == {"80/tcp": {}}
    python = store.ensure("python")
    assert python.ref == "docker.io/library/python:latest"
    # The layers, stacked, hold a python that runs the standard library (chroot into a merged copy).
    root = tmp_path / "python-root"
    root.mkdir()
    for layer in reversed(store.rootfs_layers(python)):  # bottom first; our layers delete nothing
        subprocess.run(["cp", "-a", f"{layer}/.", str(root)], check=True)
    for alias in ("usr/local/bin/python", "usr/local/bin/python3", "usr/bin/python", "usr/bin/python3"):
        assert os.readlink(root / alias) == "/usr/bin/python3.11"
    out = subprocess.run(
        ["chroot", str(root), "/usr/bin/env", "-i", "PATH=/usr/local/bin:/usr/bin:/bin", "python3", "-u", "-c",
         "import json, socket, ssl, sqlite3, http.server; print(json.dumps({'ok': True}))"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"ok": True}
