"""lab.vagrantprep: the guests' wheels are repacked from the host's venv, correctly and completely."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import zipfile
from pathlib import Path

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
