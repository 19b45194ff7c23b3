"""The lab's tutorial images: the names tutorials and the official client's tests use resolve,
through the hosts.toml the lab writes, to a repository the lab registry serves; ldd parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import images
from noded.images.mirrors import plan_endpoints
from noded.images.store import parse_image_ref

MIRROR = "192.168.56.1:5000"

# Image names in the Kubernetes tutorials and in kubernetes-client/python's e2e tests
# (kubernetes/e2e_test/test_client.py, test_apps.py, test_yaml/*.yaml; kubernetes/aio/e2e_test).
TUTORIAL_NAMES = [
    "busybox",
    "busybox:1.28",
    "busybox:1.36",
    "nginx",
    "nginx:1.14.2",
    "nginx:1.15.4",
    "nginx:1.7.9",
    "nginx:1.10",
    "python",
    "registry.k8s.io/pause:3.9",
    "k8s.gcr.io/pause:2.0",
    "docker.io/library/nginx:latest",
]


def served() -> set[str]:
    return {name for names in images.REPOSITORIES.values() for name in names}


@pytest.mark.parametrize("ref", TUTORIAL_NAMES)
def test_tutorial_names_are_served_by_the_lab_registry_through_its_mirror(tmp_path: Path, ref: str) -> None:
    images.write_hosts_dirs(tmp_path, MIRROR)
    parsed = parse_image_ref(ref)
    plan = plan_endpoints(parsed.domain, tmp_path, pinned=False)
    assert plan[0].host == MIRROR and plan[0].mirror and not plan[0].tls_verify
    assert f"{parsed.path}:{parsed.tag}" in served()


@pytest.mark.parametrize("registry", images.MIRRORED_REGISTRIES)
def test_the_hosts_dirs_fall_back_to_the_real_registry(tmp_path: Path, registry: str) -> None:
    images.write_hosts_dirs(tmp_path, MIRROR)
    plan = plan_endpoints(registry, tmp_path, pinned=True)
    upstream = "registry-1.docker.io" if registry == "docker.io" else registry
    assert [(e.host, e.scheme) for e in plan] == [(MIRROR, "http"), (upstream, "https")]


def test_every_image_has_names_and_they_are_unique() -> None:
    assert set(images.REPOSITORIES) == set(images.IMAGE_NAMES)
    names = [n for ns in images.REPOSITORIES.values() for n in ns]
    assert len(names) == len(set(names))
    assert all(":" in n for n in names)


def test_ldd_closure_of_python_names_the_loader_and_libc() -> None:
    libs, missing = images.ldd_closure([images.PYTHON])
    assert not missing
    names = {p.name for p in libs}
    assert "libc.so.6" in names
    assert any(n.startswith("ld-linux") for n in names)
    assert all(p.is_absolute() for p in libs)
