"""Volumes and per-pod files (no root)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from noded import names
from noded.volumes import VolumeError, container_mounts, prepare_volumes, write_pod_files

POD: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "shop", "uid": "u-1", "labels": {"app": "w"}},
    "spec": {"nodeName": "n1"},
}


def test_all_volume_kinds(tmp_path: Path) -> None:
    objs = {
        ("configMap", "shop", "cfg"): {"data": {"a.conf": "x=1", "b.conf": "y=2"}},
        ("secret", "shop", "sec"): {"data": {"pw": base64.b64encode(b"hunter2").decode()}},
    }
    pod = {
        **POD,
        "spec": {
            **POD["spec"],
            "volumes": [
                {"name": "scratch", "emptyDir": {}},
                {"name": "host", "hostPath": {"path": str(tmp_path / "hp" / "d"), "type": "DirectoryOrCreate"}},
                {"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "b.conf", "path": "renamed.conf"}]}},
                {"name": "sec", "secret": {"secretName": "sec"}},
                {
                    "name": "info",
                    "downwardAPI": {
                        "items": [{"path": "labels-app", "fieldRef": {"fieldPath": "metadata.labels['app']"}}]
                    },
                },
            ],
        },
    }
    vols = prepare_volumes(pod, tmp_path / "pod", lambda k, ns, n: objs.get((k, ns, n)))
    assert Path(vols["scratch"]).is_dir() and Path(vols["host"]).is_dir()
    assert (Path(vols["cfg"]) / "renamed.conf").read_text() == "y=2" and not (Path(vols["cfg"]) / "a.conf").exists()
    assert (Path(vols["sec"]) / "pw").read_text() == "hunter2"
    assert (Path(vols["info"]) / "labels-app").read_text() == "w"
    files = write_pod_files(pod, tmp_path / "pod", "10.244.1.5", "10.96.0.10")
    mounts = container_mounts(
        {"volumeMounts": [{"name": "cfg", "mountPath": "/etc/app", "readOnly": True}]}, vols, files
    )
    assert [(m.container_path, m.read_only) for m in mounts] == [
        ("/etc/app", True),
        ("/etc/hosts", False),
        ("/etc/resolv.conf", False),
    ]
    assert "10.244.1.5\tweb" in Path(files["/etc/hosts"]).read_text()
    resolv = Path(files["/etc/resolv.conf"]).read_text()
    assert "nameserver 10.96.0.10" in resolv and "search shop.svc.cluster.local" in resolv


def test_missing_sources_are_clear_errors(tmp_path: Path) -> None:
    pod = {**POD, "spec": {"volumes": [{"name": "cfg", "configMap": {"name": "gone"}}]}}
    with pytest.raises(VolumeError, match='configMap "gone" not found'):
        prepare_volumes(pod, tmp_path, lambda *a: None)
    pod = {**POD, "spec": {"volumes": [{"name": "cfg", "configMap": {"name": "gone", "optional": True}}]}}
    assert Path(prepare_volumes(pod, tmp_path, lambda *a: None)["cfg"]).is_dir()
    pod = {**POD, "spec": {"volumes": [{"name": "h", "hostPath": {"path": str(tmp_path / "no"), "type": "Directory"}}]}}
    with pytest.raises(VolumeError, match="is not a directory"):
        prepare_volumes(pod, tmp_path, lambda *a: None)
    with pytest.raises(VolumeError, match="names no volume"):
        container_mounts({"volumeMounts": [{"name": "x", "mountPath": "/x"}]}, {}, {})


def test_names_are_readable_bounded_and_unique() -> None:
    n = names.netns_name("default", "web-5d9f", "1a2b3c4d-0000-1111", prefix="")
    assert n == "default_web-5d9f_1a2b3c4d"
    long = names.netns_name("a-very-long-namespace-name-indeed", "p" * 63, "abcdef12-3456", prefix="kt12-")
    assert len(long) <= names.NETNS_MAX and long.startswith("kt12-a-very") and long.endswith("_abcdef12")
    assert names.container_id(names.sandbox_id("ns", "p", "abcdef12", 1), "app", 3) == "ns_p_abcdef12_1_app_3"
