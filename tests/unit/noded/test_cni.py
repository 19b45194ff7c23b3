# ruff: noqa: E501  (the fake plugins are shell scripts kept verbatim)
"""CniInvoker against tiny script plugins (no root): chaining, caching, reverse DEL, errors."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from noded.network.cni import CniError, CniInvoker, CniRuntimeConf, NetworkNotReady, load_conflist, render_conflist

# A plugin that logs "<name> <command> <prevResult ips>" and, on ADD, appends an IP to the result.
PLUGIN = """#!/bin/sh
conf=$(cat)
echo "$0 $CNI_COMMAND $CNI_CONTAINERID $CNI_NETNS $(echo "$conf" | python3 -c 'import json,sys; c=json.load(sys.stdin); print(len((c.get("prevResult") or {}).get("ips", [])), c["name"], c["cniVersion"])')" >> "$LOG"
if [ "$CNI_COMMAND" = ADD ]; then
  echo "$conf" | python3 -c 'import json,sys,os; c=json.load(sys.stdin); r=c.get("prevResult") or {"cniVersion": c["cniVersion"], "ips": []}; r["ips"].append({"address": os.environ["IP"]}); print(json.dumps(r))'
fi
"""
FAILING = """#!/bin/sh
cat >/dev/null
echo '{"cniVersion":"1.0.0","code":11,"msg":"try again later","details":"busy"}'
exit 1
"""


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path, Path]:
    bins, conf = tmp_path / "bin", tmp_path / "conf"
    bins.mkdir()
    conf.mkdir()
    for name, text in (("first", PLUGIN), ("second", PLUGIN), ("broken", FAILING)):
        p = bins / name
        p.write_text(text)
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.log"
    monkeypatch.setenv("LOG", str(log))
    monkeypatch.setenv("IP", "10.244.3.7/24")
    return bins, conf, log


def write(conf: Path, plugins: list[str], **extra: object) -> None:
    (conf / "10-net.conflist").write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "net", "plugins": [{"type": t} for t in plugins], **extra})
    )


def test_add_chains_caches_and_del_runs_in_reverse(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    bins, conf, log = setup
    write(conf, ["first", "second"], cniVersions=["0.4.0", "1.1.0", "9.9.9"])
    cni = CniInvoker(conf, [bins], tmp_path / "cache")
    rt = CniRuntimeConf("sb1", "/var/run/netns/x")
    net = cni.add(rt)
    assert net.ips == ["10.244.3.7", "10.244.3.7"]
    assert (tmp_path / "cache" / "net-sb1-eth0").exists()
    cni.check(rt)
    cni.delete(rt)
    lines = [ln.split(" ", 1)[1] for ln in log.read_text().splitlines()]
    # ADD in order (second sees first's result), CHECK in order, DEL in reverse with the final result;
    # the highest cniVersions entry we speak (1.1.0) was chosen.
    assert lines == [
        "ADD sb1 /var/run/netns/x 0 net 1.1.0",
        "ADD sb1 /var/run/netns/x 1 net 1.1.0",
        "CHECK sb1 /var/run/netns/x 2 net 1.1.0",
        "CHECK sb1 /var/run/netns/x 2 net 1.1.0",
        "DEL sb1 /var/run/netns/x 2 net 1.1.0",
        "DEL sb1 /var/run/netns/x 2 net 1.1.0",
    ]
    assert [ln.split(" ", 1)[0].rsplit("/", 1)[1] for ln in log.read_text().splitlines()][-2:] == ["second", "first"]
    assert not (tmp_path / "cache" / "net-sb1-eth0").exists()


def test_failed_add_reports_plugin_error_and_del_still_works(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    bins, conf, log = setup
    write(conf, ["first", "broken"])
    cni = CniInvoker(conf, [bins], tmp_path / "cache")
    rt = CniRuntimeConf("sb2", "/var/run/netns/y")
    with pytest.raises(CniError) as info:
        cni.add(rt)
    assert info.value.code == 11 and "try again later" in str(info.value) and info.value.plugin == "broken"
    write(conf, ["first", "second"])
    cni.delete(rt)  # no cache: DEL with the current config and no prevResult
    assert "DEL sb2 /var/run/netns/y 0 net" in log.read_text()


def test_missing_config_and_plugin(setup: tuple[Path, Path, Path], tmp_path: Path) -> None:
    bins, conf, _ = setup
    cni = CniInvoker(conf, [bins], tmp_path / "cache")
    assert not cni.ready()
    with pytest.raises(NetworkNotReady):
        cni.add(CniRuntimeConf("x", "/n"))
    write(conf, ["nope"])
    with pytest.raises(CniError, match="failed to find plugin 'nope'"):
        cni.add(CniRuntimeConf("x", "/n"))


def test_rendered_conflists() -> None:
    ours = render_conflist("10.244.1.0/24")
    ref = render_conflist("10.244.1.0/24", cni="reference", data_dir="/tmp/ipam")
    assert ours["plugins"][0]["type"] == "kubelab-bridge" and ours["plugins"][0]["ipam"]["type"] == "kubelab-ipam"
    assert ref["plugins"][0]["type"] == "bridge" and ref["plugins"][0]["ipam"]["type"] == "host-local"
    for c in (ours, ref):
        p = c["plugins"][0]
        assert p["bridge"] == "cni0" and p["isGateway"] and p["hairpinMode"]
        assert p["ipam"]["ranges"] == [[{"subnet": "10.244.1.0/24"}]]
    # ours masquerades only traffic leaving the cluster CIDR; the reference bridge could exempt
    # only its own /24 and would NAT pod-to-pod traffic between nodes, so it does not masquerade
    assert ours["plugins"][0]["ipMasq"] and ours["plugins"][0]["ipMasqExclude"] == ["10.244.0.0/16"]
    assert not ref["plugins"][0]["ipMasq"]
    with pytest.raises(ValueError):
        render_conflist("10.244.1.0/24", cni="flannel")
    assert ours["cniVersion"] == ref["cniVersion"] == "1.0.0"  # the reference plugins 1.1.1 speak at most 1.0.0


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"pod_cidr": "nope"}, "nope"),
        ({"pod_cidr": "10.244.1.0/24", "cluster_cidr": "10.244.0.0/33"}, "10.244.0.0/33"),
        ({"pod_cidr": "10.244.1.0/24", "bridge": "a-bridge-name-too-long"}, "a-bridge-name-too-long"),
        ({"pod_cidr": "10.244.1.0/24", "bridge": ""}, "1-15 characters"),
    ],
)
def test_render_conflist_names_bad_input(kw: dict[str, str], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        render_conflist(**kw)


def test_single_plugin_conf_is_converted(tmp_path: Path) -> None:
    (tmp_path / "10.conf").write_text(json.dumps({"cniVersion": "1.0.0", "name": "old", "type": "bridge"}))
    conf = load_conflist(tmp_path)
    assert conf["name"] == "old" and conf["plugins"][0]["type"] == "bridge"
