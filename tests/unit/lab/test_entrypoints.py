"""Every component's ``python -m`` entry point is its ``kubelab`` command, through componentbase."""

from __future__ import annotations

import argparse
import subprocess
import sys
from typing import Any

import pytest

from controlplane import componentbase

# package run with ``python -m`` -> the kubelab command it is
ENTRY_POINTS = {
    "controlplane.apiserver": "apiserver",
    "controlplane.scheduler": "scheduler",
    "controlplane.controllers": "controller-manager",
    "controlplane.dns": "dns",
    "controlplane.metricsserver": "metrics-server",
    "noded": "noded",
    "proxy": "proxy",
    "lab.dashboard": "dashboard",
}


@pytest.mark.parametrize("package", sorted(ENTRY_POINTS))
def test_python_m_is_the_kubelab_command(package: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", package, "--help"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.startswith(f"usage: python -m {package}")
    assert "--verbose" in out
    kubelab = subprocess.run(
        [sys.executable, "-m", "lab", ENTRY_POINTS[package], "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    # the same options in both spellings (kubelab's -v sits before the command)
    assert kubelab.split("options:", 1)[1] in out.replace("  -v, --verbose         log at DEBUG level\n", "")


def _register(sub: Any) -> None:
    p = sub.add_parser("thing")
    p.add_argument("--size", type=int, required=True)
    p.set_defaults(func=lambda a: a.size + (100 if a.verbose else 0))
    sub.add_parser("other").set_defaults(func=lambda a: 99)


def test_run_command_runs_only_the_named_command_with_verbose_anywhere() -> None:
    assert componentbase.run_command("thing", _register, ["--size", "3"]) == 3
    assert componentbase.run_command("thing", _register, ["--size", "3", "-v"]) == 103
    with pytest.raises(SystemExit):
        componentbase.run_command("thing", _register, ["other"])
    with pytest.raises(KeyError):
        componentbase.command_parser("missing", _register, prog="x")


def test_controlplane_options_reach_the_controller_manager_by_name(tmp_path: Any) -> None:
    from controlplane import cli

    sub = argparse.ArgumentParser().add_subparsers()
    cli.register(sub)
    args = sub.choices["controlplane"].parse_args(
        ["--node-monitor-grace-period", "20s", "--cluster-cidr", "10.9.0.0/16", "--no-leader-elect"]
    )
    opts = cli.controller_options(args, tmp_path / "ca.crt")
    assert (opts.node_monitor_grace_period, opts.cluster_cidr, opts.leader_elect) == (20.0, "10.9.0.0/16", False)
    assert opts.root_ca_file == str(tmp_path / "ca.crt")
    assert not opts.identity.startswith("kl-cp2_")
    args = sub.choices["controlplane"].parse_args(["--hostname-override", "kl-cp2"])
    assert cli.controller_options(args, tmp_path / "ca.crt").identity.startswith("kl-cp2_")


def test_the_lab_installs_the_cni_plugins_through_their_command(tmp_path: Any) -> None:
    from lab import labcmd

    labcmd.install_cni_bin(tmp_path / "bin")
    for plugin in ("kubelab-bridge", "kubelab-ipam"):
        assert (tmp_path / "bin" / plugin).stat().st_mode & 0o111, plugin


def test_noded_binaries_builds_the_shim_and_pause(tmp_path: Any) -> None:
    import shutil

    if shutil.which("gcc") is None:
        pytest.skip("no C compiler here")
    res = subprocess.run(
        [sys.executable, "-m", "noded", "binaries", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".sha256")) == ["kubelab-shim", "pause"]
    no_out = subprocess.run([sys.executable, "-m", "noded", "binaries"], capture_output=True, text=True, timeout=60)
    assert no_out.returncode == 2 and "--out" in no_out.stderr
