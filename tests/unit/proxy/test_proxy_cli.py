"""``kubelab proxy render`` prints the ruleset for a file of objects without touching the kernel."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab import cli
from tests.unit.proxy.test_proxy_rules import OVERALL_EXPECTED, OVERALL_SERVICES, OVERALL_SLICES, assert_same_rules


def test_render_prints_kube_proxys_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "objs.json"
    f.write_text(json.dumps({"kind": "List", "items": OVERALL_SERVICES + OVERALL_SLICES}))
    code = cli.main(
        [
            "proxy",
            "render",
            "-f",
            str(f),
            "--node-name",
            "test-hostname",
            "--cluster-cidr",
            "10.0.0.0/8",
            "--node-ip",
            "192.168.0.2",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert_same_rules(OVERALL_EXPECTED, out)
    assert "*mangle\n:KUBE-PROXY-CANARY - [0:0]" in out


def test_render_yaml_and_reports_skipped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "objs.yaml"
    f.write_text(
        "kind: Service\napiVersion: v1\nmetadata: {name: bad, namespace: ns}\n"
        "spec: {clusterIP: 10.96.0.9, ports: [{port: 80, protocol: ICMP}]}\n"
    )
    assert cli.main(["proxy", "render", "-f", str(f)]) == 0
    out = capsys.readouterr().out
    assert "# skipped: Service ns/bad spec.ports[0]: unknown protocol 'ICMP'" in out


def test_render_bad_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "broken.yaml"
    f.write_text("kind: [unclosed\n")
    assert cli.main(["proxy", "render", "-f", str(f)]) == 1
    assert "cannot read" in capsys.readouterr().err
    f.write_text("kind: List\nitems: []\n")
    with pytest.raises(SystemExit, match="cluster-cidr"):
        cli.main(["proxy", "render", "-f", str(f), "--cluster-cidr", "nope"])


def test_daemon_flags_are_checked() -> None:
    assert cli.main(["proxy", "--kubeconfig", "k"]) == 2  # no --node-name
    assert cli.main(["proxy", "--node-name", "n"]) == 2  # no source
