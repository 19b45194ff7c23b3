"""Image store against a real registry (docker-registry on 127.0.0.1) and real layouts."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from noded.images.store import ImageNeverPullError, ImagePullError, ImageStore
from noded.images.unpack import LayerError, unpack_layer
from tests.helpers.registry import Registry


def test_pull_shares_layers_and_verifies(tmp_path: Path, registry: Registry) -> None:
    store = ImageStore(tmp_path / "store", insecure_registries=[registry.address])
    busybox = store.ensure(f"{registry.address}/kubelab/busybox:latest", "IfNotPresent")
    hello = store.ensure(f"{registry.address}/kubelab/hello:latest", "IfNotPresent")
    # hello is built on busybox: the bottom layer is the same blob, unpacked once.
    assert hello.diff_ids[0] == busybox.diff_ids[0]
    assert len(list((tmp_path / "store" / "layers").iterdir())) == len(set(busybox.diff_ids + hello.diff_ids))
    layers = store.rootfs_layers(hello)
    assert (layers[-1] / "bin" / "busybox").exists()
    assert any((d / "www" / "cgi-bin" / "index.cgi").exists() for d in layers)
    assert hello.config["config"]["Entrypoint"] == ["/pause"]
    # Present already: IfNotPresent and Never reuse it; Always resolves the digest, same image.
    assert store.ensure(f"{registry.address}/kubelab/hello", "Never").image_id == hello.image_id
    assert store.ensure(f"{registry.address}/kubelab/hello:latest", "Always").image_id == hello.image_id


def test_missing_image_reports_registry_reason(tmp_path: Path, registry: Registry) -> None:
    store = ImageStore(tmp_path / "store", insecure_registries=[registry.address])
    with pytest.raises(ImagePullError) as info:
        store.ensure(f"{registry.address}/kubelab/nope:latest", "IfNotPresent")
    assert "manifest unknown" in str(info.value) or "not found" in str(info.value)
    assert info.value.reason == "ErrImagePull"
    with pytest.raises(ImageNeverPullError):
        store.ensure(f"{registry.address}/kubelab/busybox:latest", "Never")
    assert store.list_images() == []


def test_tls_registry_without_insecure_flag_fails(tmp_path: Path, registry: Registry) -> None:
    store = ImageStore(tmp_path / "store")  # not told the registry is plain HTTP
    with pytest.raises(ImagePullError):
        store.ensure(f"{registry.address}/kubelab/pause:latest")


def test_whiteouts_and_opaque_dirs(tmp_path: Path) -> None:

    blob = tmp_path / "layer.tar"
    with tarfile.open(blob, "w") as tar:
        for name, data in (("a/keep", b"1"), ("a/.wh.gone", b""), ("b/.wh..wh..opq", b"")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("c")
        link.type = tarfile.SYMTYPE
        link.linkname = str(tmp_path / "outside")
        tar.addfile(link)
        evil = tarfile.TarInfo("c/escape")
        tar.addfile(evil, io.BytesIO(b""))
    with pytest.raises(LayerError):
        unpack_layer(blob, tmp_path / "fs")
    # Same without the escaping member.
    blob2 = tmp_path / "layer2.tar"
    with tarfile.open(blob) as src, tarfile.open(blob2, "w") as dst:
        for m in src.getmembers():
            if m.name != "c/escape":
                dst.addfile(m, src.extractfile(m) if m.isreg() else None)
    unpack_layer(blob2, tmp_path / "fs2")
    gone = os.lstat(tmp_path / "fs2" / "a" / "gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(tmp_path / "fs2" / "b", "trusted.overlay.opaque") == b"y"
    assert not (tmp_path / "outside").exists()


def test_gc_removes_lru_unused(tmp_path: Path, registry: Registry) -> None:
    store = ImageStore(tmp_path / "store", insecure_registries=[registry.address])
    pause = store.ensure(f"{registry.address}/kubelab/pause:latest")
    busybox = store.ensure(f"{registry.address}/kubelab/busybox:latest")
    removed = store.gc(0, in_use=[busybox.ref])
    assert removed == [pause.ref]
    assert store.get(busybox.ref) is not None and store.get(pause.ref) is None
    assert not store.layer_dir(pause.diff_ids[0]).exists()
    assert store.layer_dir(busybox.diff_ids[0]).exists()


def test_import_archive(tmp_path: Path, lab_images: dict[str, Path]) -> None:
    archive = tmp_path / "pause.tar"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            f"oci:{lab_images['pause']}:latest",
            f"oci-archive:{archive}:example.test/lab/pause:v1",
        ],
        check=True,
    )
    store = ImageStore(tmp_path / "store")
    img = store.import_archive(archive)
    assert img.ref == "example.test/lab/pause:v1"
    assert store.ensure("example.test/lab/pause:v1", "Never").image_id == img.image_id


def test_image_import_command(tmp_path: Path, lab_images: dict[str, Path]) -> None:
    import sys

    archive = tmp_path / "busybox.tar"
    subprocess.run(
        [
            "skopeo",
            "copy",
            "--quiet",
            f"oci:{lab_images['busybox']}:latest",
            f"oci-archive:{archive}:example.test/lab/busybox:1.0",
        ],
        check=True,
    )
    root = tmp_path / "noded"
    res = subprocess.run(
        [sys.executable, "-m", "lab", "image", "import", str(archive), "--root-dir", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert "imported example.test/lab/busybox:1.0" in res.stdout
    listing = subprocess.run(
        [sys.executable, "-m", "lab", "image", "list", "--root-dir", str(root)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert listing.startswith("example.test/lab/busybox:1.0\tsha256:")
    bad = subprocess.run(
        [sys.executable, "-m", "lab", "image", "import", str(tmp_path / "nope.tar"), "--root-dir", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1 and "no such archive" in bad.stderr
