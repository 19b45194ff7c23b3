"""kubelab-bridge + kubelab-ipam exec'd on a real kernel, one spec rule per test.

Every plugin runs inside the test's own "host" namespace (``ip netns exec``), pods are namespaces
made by the test; all of them (and with them the bridge, veths and iptables rules) are deleted at
teardown. Addresses: pod network 10.244.1.0/24, bridge cni0 = 10.244.1.1.
"""

from __future__ import annotations

import json

import pytest

from netplugin.bridge import host_veth_name
from tests.helpers.cniruntime import PluginError
from tests.privileged.netplugin.conftest import CniEnv


def test_add_wires_a_pod(cni: CniEnv) -> None:
    pod = cni.pod()
    res = cni.run("ADD", cni.conf(mtu=1400), netns=pod)
    assert res is not None and res["cniVersion"] == "1.1.0"
    host_if = host_veth_name("ctr1", "eth0")
    assert [i["name"] for i in res["interfaces"]] == ["cni0", host_if, "eth0"]
    assert res["ips"] == [{"address": "10.244.1.2/24", "gateway": "10.244.1.1", "interface": 2}]
    br = json.loads(cni.sh("ip", "-j", "addr", "show", "cni0"))[0]
    assert {a["local"] for a in br["addr_info"] if a["family"] == "inet"} == {"10.244.1.1"}
    veth = json.loads(cni.sh("ip", "-j", "-d", "link", "show", host_if))[0]
    assert veth["master"] == "cni0" and veth["mtu"] == 1400
    assert veth["linkinfo"]["info_slave_data"]["hairpin"] is True
    eth0 = json.loads(cni.sh("ip", "-j", "addr", "show", "eth0", netns=pod))[0]
    assert eth0["mtu"] == 1400 and "UP" in eth0["flags"]
    assert eth0["address"] == res["interfaces"][2]["mac"]
    assert "default via 10.244.1.1 dev eth0" in cni.sh("ip", "route", netns=pod)
    assert cni.sh("cat", "/proc/sys/net/ipv4/ip_forward").strip() == "1"
    assert cni.sh("cat", "/proc/sys/net/ipv4/conf/eth0/arp_notify", netns=pod).strip() == "1"
    assert cni.reserved() == ["10.244.1.2"]


@pytest.mark.parametrize("version", ["1.0.0", "0.4.0"])
def test_result_format_follows_cni_version(cni: CniEnv, version: str) -> None:
    res = cni.run("ADD", cni.conf(cniVersion=version), netns=cni.pod())
    assert res is not None and res["cniVersion"] == version
    assert ("version" in res["ips"][0]) == (version == "0.4.0")


def test_add_on_existing_ifname_fails_and_changes_nothing(cni: CniEnv) -> None:
    pod = cni.pod()
    cni.sh("ip", "link", "add", "eth0", "type", "veth", "peer", "name", "other0", netns=pod)
    with pytest.raises(PluginError) as e:
        cni.run("ADD", cni.conf(), netns=pod)
    assert e.value.code == 4 and "already exists" in e.value.msg
    assert cni.links() == ["lo"] and cni.reserved() == []


def test_missing_netns_is_code_4_and_changes_nothing(cni: CniEnv) -> None:
    with pytest.raises(PluginError) as e:
        cni.run("ADD", cni.conf(), netns="/var/run/netns/kltest-no-such-ns")
    assert e.value.code == 4 and "kltest-no-such-ns" in e.value.msg
    assert cni.links() == ["lo"] and cni.reserved() == []


def test_failed_add_is_undone(cni: CniEnv) -> None:
    pod = cni.pod()
    conf = cni.conf()
    conf["ipam"]["routes"] = [{"dst": "10.96.0.0/12", "gw": "192.0.2.1"}]  # gateway not reachable
    with pytest.raises(PluginError) as e:
        cni.run("ADD", conf, netns=pod)
    assert e.value.code == 101 and "10.96.0.0/12" in e.value.msg
    assert cni.links() == ["cni0", "lo"]  # the shared bridge stays; no veth
    assert "eth0" not in cni.sh("ip", "link", netns=pod)
    assert cni.reserved() == []


def test_bad_input_changes_nothing(cni: CniEnv) -> None:
    pod = cni.pod()
    cases = [
        (b'{"cniVersion": "1.1.0", "name": ', 6),
        (json.dumps(cni.conf(cniVersion="2.0.0")).encode(), 1),
        (json.dumps(cni.conf(ipam={"type": "kubelab-ipam", "ranges": [[{"subnet": "10.244.1.0/31"}]]})).encode(), 7),
    ]
    for raw, code in cases:
        with pytest.raises(PluginError) as e:
            cni.run("ADD", raw, netns=pod, plugin="kubelab-bridge")
        assert e.value.code == code, e.value
    with pytest.raises(PluginError) as e:
        cni.run("ADD", cni.conf(), netns=pod, cid="")  # CNI_CONTAINERID missing
    assert e.value.code == 4 and "CNI_CONTAINERID" in e.value.msg
    assert "too small" in cni_error(cni, cases[2][0], pod)
    assert cni.links() == ["lo"] and cni.reserved() == []


def cni_error(cni: CniEnv, raw: bytes, pod: str) -> str:
    try:
        cni.run("ADD", raw, netns=pod, plugin="kubelab-bridge")
    except PluginError as e:
        return e.msg
    raise AssertionError("ADD should have failed")


def test_exhausted_range_add_error_and_status_50(cni: CniEnv) -> None:
    conf = cni.conf()
    conf["ipam"]["ranges"] = [[{"subnet": "10.244.1.0/24", "rangeStart": "10.244.1.2", "rangeEnd": "10.244.1.2"}]]
    cni.run("STATUS", conf)
    cni.run("ADD", conf, netns=cni.pod(), cid="a")
    with pytest.raises(PluginError) as e:
        cni.run("ADD", conf, netns=cni.pod(), cid="b")
    assert e.value.code == 11 and "no IP addresses available" in e.value.msg
    with pytest.raises(PluginError) as e:
        cni.run("STATUS", conf)
    assert e.value.code == 50
    assert cni.links().count("cni0") == 1 and len([x for x in cni.links() if x.startswith("veth")]) == 1


def test_del_is_best_effort_and_idempotent(cni: CniEnv) -> None:
    pod = cni.pod()
    conf = cni.conf(ipMasq=True, ipMasqExclude=["10.244.0.0/16"])
    res = cni.run("ADD", conf, netns=pod)
    assert len(cni.nat_rules()) == 4
    cni.run("DEL", {**conf, "prevResult": res}, netns=pod)
    assert cni.links() == ["cni0", "lo"] and cni.reserved() == [] and cni.nat_rules() == []
    cni.run("DEL", conf, netns=pod)  # twice, without prevResult
    cni.run("DEL", conf)  # without CNI_NETNS


def test_del_with_netns_already_gone_releases_everything(cni: CniEnv) -> None:
    pod = cni.pod()
    conf = cni.conf(ipMasq=True)
    cni.run("ADD", conf, netns=pod)
    cni.sh("ip", "netns", "del", pod.rsplit("/", 1)[1])
    cni.run("DEL", conf, netns=pod)
    assert cni.reserved() == [] and cni.nat_rules() == [] and cni.links() == ["cni0", "lo"]


def test_check(cni: CniEnv) -> None:
    pod = cni.pod()
    conf = cni.conf(ipMasq=True)
    res = cni.run("ADD", conf, netns=pod)
    cni.run("CHECK", {**conf, "prevResult": res}, netns=pod)
    cni.sh("ip", "addr", "flush", "dev", "eth0", netns=pod)
    with pytest.raises(PluginError) as e:
        cni.run("CHECK", {**conf, "prevResult": res}, netns=pod)
    assert "10.244.1.2/24" in e.value.msg


def test_check_detects_lost_reservation(cni: CniEnv) -> None:
    pod = cni.pod()
    res = cni.run("ADD", cni.conf(), netns=pod)
    (cni.data / "kl" / "10.244.1.2").unlink()
    with pytest.raises(PluginError) as e:
        cni.run("CHECK", {**cni.conf(), "prevResult": res}, netns=pod)
    assert "no IP reservation" in e.value.msg


def test_promisc_mode(cni: CniEnv) -> None:
    cni.run("ADD", cni.conf(hairpinMode=False, promiscMode=True), netns=cni.pod())
    assert "PROMISC" in json.loads(cni.sh("ip", "-j", "link", "show", "cni0"))[0]["flags"]


def test_gc_removes_stale_reservations_and_rules(cni: CniEnv) -> None:
    conf = cni.conf(ipMasq=True)
    pods = {cid: cni.pod() for cid in ("keep", "drop")}
    for cid, pod in pods.items():
        cni.run("ADD", conf, netns=pod, cid=cid)
    cni.run("GC", {**conf, "cni.dev/valid-attachments": [{"containerID": "keep", "ifname": "eth0"}]})
    assert cni.reserved() == ["10.244.1.2"]
    assert all("id: keep" in r for r in cni.nat_rules())


def test_version(cni: CniEnv) -> None:
    for plugin in ("kubelab-bridge", "kubelab-ipam"):
        out = cni.run("VERSION", {"cniVersion": "1.1.0"}, plugin=plugin)
        assert out is not None and out["supportedVersions"][-1] == "1.1.0"


def test_ipam_exec_path_matches_in_process(cni: CniEnv) -> None:
    """KUBELAB_CNI_EXEC_IPAM=1 makes the bridge exec kubelab-ipam instead of running it inside."""
    res = cni.run("ADD", cni.conf(), netns=cni.pod(), extra_env={"KUBELAB_CNI_EXEC_IPAM": "1"})
    assert res is not None and res["ips"][0]["address"] == "10.244.1.2/24"
    assert (cni.data / "kl" / "10.244.1.2").read_bytes() == b"ctr1\r\neth0"
