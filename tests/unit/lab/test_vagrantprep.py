"""lab.vagrantprep: the guests' wheels are repacked from the host's venv, correctly and completely."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import zipfile
from pathlib import Path

import pytest

from lab import vagrantprep


def test_runtime_closure_has_the_runtime_deps_and_not_the_test_tools() -> None:
    names = {vagrantprep._norm(d.metadata["Name"]) for d in vagrantprep.runtime_distributions()}
    # direct deps, a transitive one (starlette via fastapi) and an extra's (uvloop via uvicorn[standard])
    assert {"fastapi", "starlette", "uvicorn", "uvloop", "python_iptables", "cryptography"} <= names
    assert not {"pytest", "mypy", "ruff", "kubelab"} & names


def test_repacked_wheel_installs_what_was_installed(tmp_path: Path) -> None:
    dist = importlib.metadata.distribution("jsonpointer")
    whl = vagrantprep.repack_wheel(dist, tmp_path)
    assert whl.name.startswith(f"jsonpointer-{dist.version}-") and whl.name.endswith("-none-any.whl")
    with zipfile.ZipFile(whl) as zf:
        names = set(zf.namelist())
        info = f"jsonpointer-{dist.version}.dist-info"
        assert {"jsonpointer.py", f"{info}/METADATA", f"{info}/WHEEL", f"{info}/RECORD"} <= names
        assert not any("__pycache__" in n or n.endswith("INSTALLER") for n in names)
        record = zf.read(f"{info}/RECORD").decode().splitlines()
        assert {ln.split(",")[0] for ln in record} == names
        for ln in record:
            path, digest, size = ln.split(",")
            if digest:
                data = zf.read(path)
                want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
                assert digest == f"sha256={want}" and int(size) == len(data), path


def _subject(kubeconfig: Path) -> tuple[str, tuple[str, ...]]:
    import yaml

    from controlplane import pki

    doc = yaml.safe_load(kubeconfig.read_text())
    return pki.cert_subject(base64.b64decode(doc["users"][0]["user"]["client-certificate-data"]))


def test_every_vm_component_gets_its_own_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_vagrant_dir = vagrantprep.VAGRANT_DIR
    monkeypatch.setattr(vagrantprep, "PREP", tmp_path / ".prep")
    monkeypatch.setattr(vagrantprep, "VAGRANT_DIR", tmp_path)
    vagrantprep.prepare_pki(2)
    prep = tmp_path / ".prep"
    assert _subject(tmp_path / "admin.kubeconfig") == ("kubernetes-admin", ("system:masters",))
    assert _subject(prep / "kl-cp" / "dns.kubeconfig") == ("system:kubelab-dns", ())
    assert (prep / "kl-cp" / "pki" / "sa.key").exists()
    for n in ("kl-node1", "kl-node2"):
        assert _subject(prep / n / "kubeconfig") == (f"system:node:{n}", ("system:nodes",))
        assert _subject(prep / n / "proxy.kubeconfig") == ("system:kube-proxy", ())
        assert _subject(prep / n / "netagent.kubeconfig") == ("system:kubelab-netagent", ())
    provision = (real_vagrant_dir / "provision" / "node.sh").read_text()
    for flag in ("dns.kubeconfig", "proxy.kubeconfig", "netagent.kubeconfig"):
        assert f"--kubeconfig /etc/kubelab/{flag}" in provision
    assert "admin.kubeconfig" not in provision  # no component runs as the admin
