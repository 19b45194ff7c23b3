"""kubelab-bridge's orchestration against FakeNetlink (no root): steps, undo, DEL/CHECK rules.

Namespaces are fake paths ("/run/netns/pod1"); the IPAM plugin is our own launcher installed in a
``tmp_path`` CNI_PATH (run in-process by the bridge) or a small scripted IPAM plugin that records
the commands it was exec'd with (to check the spec's delegation rules).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from netplugin import bridge, masq, skel
from netplugin.fake_netlink import FakeNetlink
from netplugin.install import install_plugins

POD_NS = "/run/netns/pod1"


class FakeMasq:
    def __init__(self) -> None:
        self.rules: dict[str, list[tuple[str, str]]] = {}
        self.fail = False

    def setup(self, network: str, cid: str, pod_ips: list[tuple[str, str]], exclude: list[str]) -> None:
        if self.fail:
            raise OSError("iptables-restore failed: injected")
        self.rules[masq.chain_name(network, cid)] = pod_ips

    def teardown(self, network: str, cid: str, families: Any = (4, 6), pod_ips: Any = ()) -> None:
        self.rules.pop(masq.chain_name(network, cid), None)

    def exists(self, network: str, cid: str, family: int = 4) -> bool:
        return masq.chain_name(network, cid) in self.rules

    def gc(self, network: str, valid_ids: set[str]) -> list[str]:
        return []


@pytest.fixture
def env(tmp_path: Path) -> dict[str, Any]:
    bindir = tmp_path / "bin"
    install_plugins(bindir)
    nl = FakeNetlink()
    nl.add_netns(POD_NS)
    return {"nl": nl, "bin": bindir, "data": tmp_path / "data", "masq": FakeMasq(), "tmp": tmp_path}


def conf(e: dict[str, Any], **kw: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "cniVersion": "1.1.0",
        "name": "kl",
        "type": "kubelab-bridge",
        "bridge": "cni0",
        "isGateway": True,
        "isDefaultGateway": True,
        "hairpinMode": True,
        "mtu": 1450,
        "ipam": {"type": "kubelab-ipam", "dataDir": str(e["data"]), "ranges": [[{"subnet": "10.244.1.0/24"}]]},
    }
    c.update(kw)
    return c


def args(
    e: dict[str, Any], c: dict[str, Any], command: str = "ADD", cid: str = "ctr1", netns: str = POD_NS
) -> skel.CmdArgs:
    environ = {"CNI_PATH": str(e["bin"])}
    return skel.CmdArgs(command, cid, netns, "eth0", "", [str(e["bin"])], c, json.dumps(c).encode(), environ)


def reserved(e: dict[str, Any]) -> list[str]:
    d = e["data"] / "kl"
    return sorted(n for n in os.listdir(d) if n[0].isdigit()) if d.exists() else []


def test_add_builds_bridge_veth_addresses_routes(env: dict[str, Any]) -> None:
    nl: FakeNetlink = env["nl"]
    res = bridge.cmd_add(args(env, conf(env)), nl=nl, masq=env["masq"])
    host_if = bridge.host_veth_name("ctr1", "eth0")
    assert len(host_if) <= 15 and host_if.startswith("veth")
    assert [i["name"] for i in res["interfaces"]] == ["cni0", host_if, "eth0"]
    assert res["interfaces"][2]["sandbox"] == POD_NS
    assert res["ips"] == [{"address": "10.244.1.2/24", "gateway": "10.244.1.1", "interface": 2}]
    assert res["routes"] == [{"dst": "0.0.0.0/0", "gw": "10.244.1.1"}]
    br = nl.get_link("cni0")
    host = nl.get_link(host_if)
    assert br is not None and host is not None
    assert host.master == br.index and host.hairpin and host.mtu == 1450
    assert nl.addresses("cni0") == ["10.244.1.1/24"]
    assert nl.addresses("eth0", POD_NS) == ["10.244.1.2/24"]
    assert any(r.dst == "0.0.0.0/0" and r.gw == "10.244.1.1" for r in nl.routes(POD_NS))
    assert nl.get_sysctl("net/ipv4/ip_forward") == "1"
    assert nl.get_sysctl("net/ipv4/conf/eth0/arp_notify", POD_NS) == "1"


def test_add_on_existing_ifname_fails_and_changes_nothing(env: dict[str, Any]) -> None:
    nl: FakeNetlink = env["nl"]
    nl.create_veth("other", "eth0", POD_NS, None, 0)
    with pytest.raises(skel.CniError) as e:
        bridge.cmd_add(args(env, conf(env)), nl=nl)
    assert e.value.code == 4 and "CNI_IFNAME 'eth0' already exists" in e.value.msg
    assert nl.get_link("cni0") is None and reserved(env) == []


def test_add_into_missing_netns_is_code_4(env: dict[str, Any]) -> None:
    with pytest.raises(skel.CniError) as e:
        bridge.cmd_add(args(env, conf(env), netns="/run/netns/nope"), nl=env["nl"])
    assert e.value.code == 4 and "CNI_NETNS" in e.value.msg and "/run/netns/nope" in e.value.msg


@pytest.mark.parametrize("step", ["add_route", "add_address", "set_hairpin"])
def test_failed_step_undoes_everything(env: dict[str, Any], step: str) -> None:
    nl: FakeNetlink = env["nl"]
    nl.fail_on = {step}
    with pytest.raises(skel.CniError) as e:
        bridge.cmd_add(args(env, conf(env)), nl=nl, masq=env["masq"])
    assert e.value.code == skel.NETLINK_FAILURE and step in e.value.msg
    assert nl.get_link(bridge.host_veth_name("ctr1", "eth0")) is None
    assert nl.get_link("eth0", POD_NS) is None
    assert reserved(env) == []  # IPAM DEL ran


def test_failed_masq_undoes_everything(env: dict[str, Any]) -> None:
    env["masq"].fail = True
    with pytest.raises(skel.CniError) as e:
        bridge.cmd_add(args(env, conf(env, ipMasq=True)), nl=env["nl"], masq=env["masq"])
    assert e.value.code == skel.IO_FAILURE
    assert env["nl"].get_link("eth0", POD_NS) is None and reserved(env) == [] and env["masq"].rules == {}


def test_ipam_failure_removes_veth(env: dict[str, Any]) -> None:
    c = conf(env)
    c["ipam"]["ranges"] = [[{"subnet": "10.244.1.0/24", "rangeStart": "10.244.1.2", "rangeEnd": "10.244.1.2"}]]
    bridge.cmd_add(args(env, c, cid="first"), nl=env["nl"])
    env["nl"].add_netns("/run/netns/pod2")
    with pytest.raises(skel.CniError) as e:
        bridge.cmd_add(args(env, c, cid="second", netns="/run/netns/pod2"), nl=env["nl"])
    assert e.value.code == 11
    assert env["nl"].get_link(bridge.host_veth_name("second", "eth0")) is None


def test_stale_host_veth_of_same_attachment_is_replaced(env: dict[str, Any]) -> None:
    nl: FakeNetlink = env["nl"]
    nl.add_netns("/run/netns/old")
    nl.create_veth(bridge.host_veth_name("ctr1", "eth0"), "x", "/run/netns/old", None, 0)
    res = bridge.cmd_add(args(env, conf(env)), nl=nl)
    assert res["ips"][0]["address"] == "10.244.1.2/24"


def test_del_is_idempotent_and_tolerant(env: dict[str, Any]) -> None:
    nl: FakeNetlink = env["nl"]
    c = conf(env, ipMasq=True)
    bridge.cmd_add(args(env, c), nl=nl, masq=env["masq"])
    bridge.cmd_del(args(env, c, "DEL"), nl=nl, masq=env["masq"])  # no prevResult
    assert nl.get_link("eth0", POD_NS) is None and reserved(env) == [] and env["masq"].rules == {}
    bridge.cmd_del(args(env, c, "DEL"), nl=nl, masq=env["masq"])  # twice
    bridge.cmd_del(args(env, c, "DEL", netns=""), nl=nl, masq=env["masq"])  # no netns
    bridge.cmd_del(args(env, c, "DEL", netns="/run/netns/gone"), nl=nl, masq=env["masq"])  # missing netns


def test_del_releases_ip_when_netns_is_gone(env: dict[str, Any]) -> None:
    nl: FakeNetlink = env["nl"]
    bridge.cmd_add(args(env, conf(env)), nl=nl)
    nl.remove_netns(POD_NS)
    assert nl.get_link(bridge.host_veth_name("ctr1", "eth0")) is None  # went with the namespace
    bridge.cmd_del(args(env, conf(env), "DEL"), nl=nl)
    assert reserved(env) == []


def test_check_passes_after_add_and_fails_on_drift(env: dict[str, Any]) -> None:
    nl: FakeNetlink = env["nl"]
    c = conf(env, ipMasq=True)
    res = bridge.cmd_add(args(env, c), nl=nl, masq=env["masq"])
    prev = {**c, "prevResult": {"cniVersion": "1.1.0", **res}}
    bridge.cmd_check(args(env, prev, "CHECK"), nl=nl, masq=env["masq"])
    nl.ns[POD_NS].addrs["eth0"] = []
    with pytest.raises(skel.CniError) as e:
        bridge.cmd_check(args(env, prev, "CHECK"), nl=nl, masq=env["masq"])
    assert e.value.code == skel.CHECK_FAILED and "10.244.1.2/24" in e.value.msg


def test_check_without_prev_result_is_code_7(env: dict[str, Any]) -> None:
    with pytest.raises(skel.CniError) as e:
        bridge.cmd_check(args(env, conf(env), "CHECK"), nl=env["nl"])
    assert e.value.code == 7 and "prevResult" in e.value.msg


def test_prev_result_is_passed_through(env: dict[str, Any]) -> None:
    prev = {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "lo0"}],
        "ips": [{"address": "192.0.2.5/32", "interface": 0}],
        "routes": [],
        "dns": {"nameservers": ["10.96.0.10"]},
    }
    res = bridge.cmd_add(args(env, conf(env, prevResult=prev)), nl=env["nl"])
    assert res["interfaces"][0] == {"name": "lo0"} and len(res["interfaces"]) == 4
    assert res["ips"][0]["address"] == "192.0.2.5/32" and res["ips"][1]["interface"] == 3
    assert res["dns"] == {"nameservers": ["10.96.0.10"]}


@pytest.mark.parametrize(
    ("extra", "code", "word"),
    [
        ({"mtu": "big"}, 7, "mtu"),
        ({"hairpinMode": True, "promiscMode": True}, 7, "promiscMode"),
        ({"vlan": 100}, 2, "vlan"),
        ({"ipam": {}}, 7, "ipam"),
        ({"ipam": {"type": "../x"}}, 7, "ipam.type"),
        ({"bridge": "a" * 20}, 7, "bridge"),
        ({"isGateway": "yes"}, 7, "isGateway"),
        ({"ipMasqExclude": ["nope"]}, 7, "ipMasqExclude"),
        ({"ipam": {"type": "no-such-ipam"}}, 7, "no-such-ipam"),
    ],
)
def test_bad_config_names_the_key_and_changes_nothing(
    env: dict[str, Any], extra: dict[str, Any], code: int, word: str
) -> None:
    with pytest.raises(skel.CniError) as e:
        bridge.cmd_add(args(env, conf(env, **extra)), nl=env["nl"])
    assert e.value.code == code and word in e.value.msg
    assert env["nl"].get_link("eth0", POD_NS) is None and reserved(env) == []


SCRIPTED_IPAM = """#!{py}
import json, os, sys
with open({log!r}, "a") as f:
    name = json.loads(sys.stdin.read())["name"]
    f.write(" ".join([os.environ["CNI_COMMAND"], os.environ["CNI_CONTAINERID"], name]) + "\\n")
if os.environ["CNI_COMMAND"] == "ADD":
    if {fail!r}:
        print(json.dumps({{"cniVersion": "1.0.0", "code": 11, "msg": "scripted failure"}})); sys.exit(1)
    print(json.dumps({{"cniVersion": "0.4.0", "ips": [{{"version": "4", "address": "10.244.1.50/24"}}]}}))
"""


def scripted_ipam(e: dict[str, Any], fail: bool = False) -> Path:
    log = e["tmp"] / "ipam.log"
    p = e["bin"] / "scripted-ipam"
    p.write_text(SCRIPTED_IPAM.format(py=sys.executable, log=str(log), fail=fail))
    p.chmod(0o755)
    return log


def test_delegation_execs_other_ipam_with_whole_config(env: dict[str, Any]) -> None:
    log = scripted_ipam(env)
    c = conf(env, ipam={"type": "scripted-ipam"})
    res = bridge.cmd_add(args(env, c), nl=env["nl"])
    assert res["ips"] == [{"address": "10.244.1.50/24", "gateway": "10.244.1.1", "interface": 2}]
    env["nl"].fail_on = {"add_route"}
    env["nl"].add_netns("/run/netns/pod2")
    with pytest.raises(skel.CniError):
        bridge.cmd_add(args(env, c, cid="ctr2", netns="/run/netns/pod2"), nl=env["nl"])
    assert log.read_text().splitlines() == ["ADD ctr1 kl", "ADD ctr2 kl", "DEL ctr2 kl"]


def test_delegated_error_keeps_its_code(env: dict[str, Any]) -> None:
    scripted_ipam(env, fail=True)
    with pytest.raises(skel.CniError) as e:
        bridge.cmd_add(args(env, conf(env, ipam={"type": "scripted-ipam"})), nl=env["nl"])
    assert e.value.code == 11 and "scripted failure" in e.value.msg
    assert env["nl"].get_link("eth0", POD_NS) is None


def test_status_and_gc_are_delegated(env: dict[str, Any]) -> None:
    c = conf(env)
    c["ipam"]["ranges"] = [[{"subnet": "10.244.1.0/24", "rangeStart": "10.244.1.2", "rangeEnd": "10.244.1.2"}]]
    bridge.cmd_status(args(env, c, "STATUS"))
    bridge.cmd_add(args(env, c), nl=env["nl"])
    with pytest.raises(skel.CniError) as e:
        bridge.cmd_status(args(env, c, "STATUS"))
    assert e.value.code == 50
    bridge.cmd_gc(args(env, {**c, "cni.dev/valid-attachments": []}, "GC"))
    assert reserved(env) == []


def test_masq_render_shapes() -> None:
    text = masq.render_add("kl", "ctr1", [("10.244.1.2", "10.244.1.0/24")], ["10.244.0.0/16"], 4)
    chain = masq.chain_name("kl", "ctr1")
    assert len(chain) == 28 and chain.startswith("KLCNI-")
    assert f'-A POSTROUTING -s 10.244.1.2/32 -m comment --comment "name: kl id: ctr1" -j {chain}' in text
    assert f'-A {chain} -d 10.244.0.0/16 -m comment --comment "name: kl id: ctr1" -j ACCEPT' in text
    assert f"-A {chain} ! -d 224.0.0.0/4" in text
    saved = (
        "*nat\n:POSTROUTING ACCEPT [0:0]\n"
        + f":{chain} - [0:0]\n"
        + "\n".join(line for line in text.splitlines() if line.startswith("-A"))
    )
    delete = masq.render_delete(saved, [chain])
    assert f'-D POSTROUTING -s 10.244.1.2/32 -m comment --comment "name: kl id: ctr1" -j {chain}' in delete
    assert f"-X {chain}" in delete
    assert masq.render_delete("*nat\n:POSTROUTING ACCEPT [0:0]\n", [chain]) == ""
    assert masq.owned_chains(saved, "kl") == {chain: "ctr1"}
    assert masq.owned_chains(saved, "other") == {}


def test_masq_blind_delete_then_fallback_to_save() -> None:
    calls: list[list[str]] = []
    saved = "*nat\n:POSTROUTING ACCEPT [0:0]\n"

    def runner(argv: Any, stdin: bytes) -> tuple[int, bytes, bytes]:
        calls.append([argv[0], stdin.decode().split("\n")[1] if stdin else ""])
        if argv[0] == "iptables-save":
            return 0, saved.encode(), b""
        return (1, b"", b"Bad rule") if stdin.startswith(b"*nat\n-D") else (0, b"", b"")

    m = masq.Masq(runner)
    m.teardown("kl", "ctr1", pod_ips=["10.244.1.2"])  # rules already gone: blind delete fails, then look
    assert [c[0] for c in calls] == ["iptables-restore", "iptables-save"]  # nothing left to restore; no v6
    calls.clear()
    m.teardown("kl", "ctr1")  # no prevResult: look in both families
    assert [c[0] for c in calls] == ["iptables-save", "ip6tables-save"]
