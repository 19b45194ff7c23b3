"""The installed plugins as a runtime execs them (VERSION and a bad-input error need no root):
the Python launchers, and the native thin client falling back to them when no server runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from netplugin.install import install_plugins, launcher_text


def run(exe: Path, command: str, stdin: bytes, **env: str) -> tuple[int, dict[str, object]]:
    e = {"PATH": os.environ.get("PATH", ""), "CNI_COMMAND": command, **env}
    res = subprocess.run([str(exe)], input=stdin, env=e, capture_output=True, timeout=30, check=False)
    assert res.stderr == b"" or command != "VERSION", res.stderr
    return res.returncode, json.loads(res.stdout)


def test_launcher_is_isolated_and_stdlib_only() -> None:
    text = launcher_text("main_bridge", python="/usr/bin/python3.11", source_root="/src")
    assert text.startswith("#!/usr/bin/python3.11 -IS\n")
    assert "sys.path.insert(0, '/src')" in text and "from netplugin.fast.thin import main_bridge as main" in text


@pytest.mark.parametrize("native", [False, True])
def test_installed_plugins_answer_version_and_errors(tmp_path: Path, native: bool) -> None:
    if native and shutil.which("cc") is None:
        pytest.skip("no C compiler")
    paths = install_plugins(tmp_path, native=native)
    assert [p.name for p in paths] == ["kubelab-bridge", "kubelab-ipam"]
    for p in paths:
        assert os.access(p, os.X_OK)
        assert p.read_bytes().startswith(b"\x7fELF") == native
        assert (tmp_path / f"{p.name}.py").exists() == native
        rc, out = run(p, "VERSION", b'{"cniVersion": "1.0.0"}')
        assert rc == 0 and out["cniVersion"] == "1.0.0" and "1.1.0" in out["supportedVersions"]  # type: ignore[operator]
        rc, out = run(p, "ADD", b"{not json", CNI_CONTAINERID="c", CNI_NETNS="/x", CNI_IFNAME="eth0", CNI_PATH="/x")
        assert rc == 1 and out["code"] == 6


def test_reinstall_switches_kind_cleanly(tmp_path: Path) -> None:
    if shutil.which("cc") is None:
        pytest.skip("no C compiler")
    install_plugins(tmp_path, native=True)
    install_plugins(tmp_path, native=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kubelab-bridge", "kubelab-ipam"]
