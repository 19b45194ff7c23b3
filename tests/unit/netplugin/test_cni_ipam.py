"""kubelab-ipam: host-local's config keys, allocation rules, on-disk format, GC and STATUS.

Addresses: 10.244.9.0/24 style ranges (the lab's pod network); the plugin runs in-process on a
``tmp_path`` dataDir (no root needed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netplugin import skel
from netplugin.fast.ipnet import IP
from netplugin.ipam import plugin
from netplugin.ipam.allocator import IPAllocator, RangeSet, parse_ipam_config
from netplugin.ipam.disk import DiskStore
from netplugin.ipam.store import MemoryStore


def conf(tmp: Path | None = None, **ipam: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"type": "kubelab-ipam", "ranges": [[{"subnet": "10.244.9.0/24"}]]}
    if tmp is not None:
        base["dataDir"] = str(tmp)
    base.update(ipam)
    return {"cniVersion": "1.1.0", "name": "net1", "ipam": base}


def args(c: dict[str, Any], cid: str = "ctr1", ifname: str = "eth0", command: str = "ADD") -> skel.CmdArgs:
    return skel.CmdArgs(command, cid, "/x", ifname, "", ["/bin"], c, b"", {})


def cfg_error(c: dict[str, Any]) -> skel.CniError:
    with pytest.raises(skel.CniError) as e:
        parse_ipam_config(c)
    return e.value


# --- config ---


def test_defaults_match_host_local() -> None:
    cfg = parse_ipam_config(conf())
    r = cfg.range_sets[0].ranges[0]
    assert (str(r.start), str(r.end), str(r.gateway)) == ("10.244.9.1", "10.244.9.254", "10.244.9.1")
    assert cfg.data_dir == "/var/lib/cni/networks"


def test_legacy_top_level_subnet() -> None:
    cfg = parse_ipam_config(conf(ranges=None, subnet="10.1.0.0/16", rangeStart="10.1.0.10", rangeEnd="10.1.0.20"))
    r = cfg.range_sets[0].ranges[0]
    assert (str(r.subnet), str(r.start), str(r.end)) == ("10.1.0.0/16", "10.1.0.10", "10.1.0.20")


def test_subnet_too_small_is_code_7() -> None:
    err = cfg_error(conf(ranges=[[{"subnet": "10.244.9.0/31"}]]))
    assert err.code == 7 and "too small to allocate from" in err.msg and "ranges[0][0]" in err.msg


@pytest.mark.parametrize(
    ("rng", "word"),
    [
        ({"subnet": "10.244.9.0/24", "rangeStart": "10.244.10.1"}, "rangeStart"),
        ({"subnet": "10.244.9.0/24", "rangeEnd": "bogus"}, "rangeEnd"),
        ({"subnet": "10.244.9.0/24", "gateway": "10.0.0.1"}, "gateway"),
        ({"subnet": "nonsense"}, "subnet"),
        ({}, "subnet"),
        ({"subnet": "10.244.9.0/24", "rangeStart": "10.244.9.50", "rangeEnd": "10.244.9.40"}, "rangeStart"),
    ],
)
def test_bad_range_names_the_key(rng: dict[str, str], word: str) -> None:
    err = cfg_error(conf(ranges=[[rng]]))
    assert err.code == 7 and word in err.msg


def test_overlapping_ranges_rejected() -> None:
    err = cfg_error(conf(ranges=[[{"subnet": "10.244.9.0/24"}], [{"subnet": "10.244.9.0/25"}]]))
    assert err.code == 7 and "overlap" in err.msg


def test_missing_ipam_and_name() -> None:
    assert cfg_error({"cniVersion": "1.1.0", "name": "n"}).code == 7
    assert "name" in cfg_error({"cniVersion": "1.1.0", "ipam": {}}).msg


# --- allocator properties (hypothesis) ---


def small_set(start: int, end: int) -> RangeSet:
    cfg = parse_ipam_config(
        conf(ranges=[[{"subnet": "10.244.9.0/24", "rangeStart": f"10.244.9.{start}", "rangeEnd": f"10.244.9.{end}"}]])
    )
    return cfg.range_sets[0]


@settings(max_examples=60, deadline=None, database=None)
@given(
    start=st.integers(1, 20),
    size=st.integers(0, 12),
    ops=st.lists(st.tuples(st.booleans(), st.integers(0, 15)), max_size=60),
)
def test_allocator_invariants(start: int, size: int, ops: list[tuple[bool, int]]) -> None:
    rs = small_set(start, start + size)
    store = MemoryStore()
    alloc = IPAllocator(rs, store)
    holders: dict[str, IP] = {}
    last: IP | None = None
    for is_add, who in ops:
        cid = f"c{who}"
        with store:
            if is_add:
                if cid in holders:
                    with pytest.raises(skel.CniError) as e:
                        alloc.get(cid, "eth0")
                    assert "duplicate" in e.value.msg
                    continue
                free = {ip for ip, _ in rs.iterate(None)} - set(holders.values())
                if not free:
                    with pytest.raises(skel.CniError) as e:
                        alloc.get(cid, "eth0")
                    assert e.value.code == skel.TRY_AGAIN
                    continue
                ip, _ = alloc.get(cid, "eth0")
                assert ip not in holders.values()  # never twice
                assert ip != IP.parse("10.244.9.1")  # never the gateway
                assert rs.contains(ip)
                if last is not None:  # round robin: the next free one after the last handed out
                    order = [c for c, _ in rs.iterate(last)]
                    assert ip == next(c for c in order if c in free)
                holders[cid] = ip
                last = ip
            else:
                released = store.release_by_id(cid, "eth0")
                assert released == ([holders.pop(cid)] if cid in holders else [])


def test_round_robin_does_not_reuse_just_released() -> None:
    rs = small_set(2, 5)
    store = MemoryStore()
    alloc = IPAllocator(rs, store)
    with store:
        a, _ = alloc.get("a", "eth0")
        store.release_by_id("a", "eth0")
        b, _ = alloc.get("b", "eth0")
    assert (str(a), str(b)) == ("10.244.9.2", "10.244.9.3")


# --- the plugin on disk ---


def test_add_writes_host_local_format(tmp_path: Path) -> None:
    res = plugin.cmd_add(args(conf(tmp_path, routes=[{"dst": "0.0.0.0/0"}])))
    assert res["ips"] == [{"address": "10.244.9.2/24", "gateway": "10.244.9.1"}]
    assert res["routes"] == [{"dst": "0.0.0.0/0"}]
    d = tmp_path / "net1"
    assert (d / "10.244.9.2").read_bytes() == b"ctr1\r\neth0"
    assert (d / "last_reserved_ip.0").read_text() == "10.244.9.2"
    assert (d / "lock").exists()


def test_duplicate_add_fails(tmp_path: Path) -> None:
    plugin.cmd_add(args(conf(tmp_path)))
    with pytest.raises(skel.CniError) as e:
        plugin.cmd_add(args(conf(tmp_path)))
    assert "duplicate allocation is not allowed" in e.value.msg


def test_two_range_sets_give_two_addresses_and_release_both(tmp_path: Path) -> None:
    c = conf(tmp_path, ranges=[[{"subnet": "10.244.9.0/24"}], [{"subnet": "fd00:10:244:9::/64"}]])
    res = plugin.cmd_add(args(c))
    assert [ip["address"] for ip in res["ips"]] == ["10.244.9.2/24", "fd00:10:244:9::2/64"]
    plugin.cmd_del(args(c, command="DEL"))
    assert sorted(os.listdir(tmp_path / "net1")) == ["last_reserved_ip.0", "last_reserved_ip.1", "lock"]


def test_partial_failure_releases_earlier_sets(tmp_path: Path) -> None:
    c = conf(
        tmp_path,
        ranges=[
            [{"subnet": "10.244.9.0/24"}],
            [{"subnet": "10.244.8.0/24", "rangeStart": "10.244.8.5", "rangeEnd": "10.244.8.5"}],
        ],
    )
    plugin.cmd_add(args(c, cid="first"))
    with pytest.raises(skel.CniError) as e:
        plugin.cmd_add(args(c, cid="second"))
    assert e.value.code == skel.TRY_AGAIN and "no IP addresses available" in e.value.msg
    held = {n for n in os.listdir(tmp_path / "net1") if n[0].isdigit()}
    assert held == {"10.244.9.2", "10.244.8.5"}  # the second ADD's 10.244.9.3 was given back


def test_del_is_idempotent_and_matches_ifname(tmp_path: Path) -> None:
    c = conf(tmp_path)
    plugin.cmd_add(args(c, ifname="eth0"))
    plugin.cmd_add(args(c, ifname="net1"))
    plugin.cmd_del(args(c, ifname="eth0", command="DEL"))
    plugin.cmd_del(args(c, ifname="eth0", command="DEL"))
    assert (tmp_path / "net1" / "10.244.9.3").read_bytes() == b"ctr1\r\nnet1"
    assert not (tmp_path / "net1" / "10.244.9.2").exists()


def test_del_with_no_data_dir_succeeds(tmp_path: Path) -> None:
    plugin.cmd_del(args(conf(tmp_path / "never"), command="DEL"))


def test_legacy_id_only_file_is_released(tmp_path: Path) -> None:
    d = tmp_path / "net1"
    d.mkdir()
    (d / "10.244.9.7").write_text("old")
    plugin.cmd_del(args(conf(tmp_path), cid="old", command="DEL"))
    assert not (d / "10.244.9.7").exists()


def test_check(tmp_path: Path) -> None:
    c = conf(tmp_path)
    res = plugin.cmd_add(args(c))
    plugin.cmd_check(args({**c, "prevResult": res}, command="CHECK"))
    (tmp_path / "net1" / "10.244.9.2").unlink()
    with pytest.raises(skel.CniError) as e:
        plugin.cmd_check(args({**c, "prevResult": res}, command="CHECK"))
    assert "no IP reservation" in e.value.msg


@pytest.mark.parametrize("key", ["cni.dev/valid-attachments", "cni.dev/attachments"])
def test_gc_frees_only_invalid_attachments(tmp_path: Path, key: str) -> None:
    c = conf(tmp_path)
    for cid in ("keep", "drop"):
        plugin.cmd_add(args(c, cid=cid))
    (tmp_path / "net1" / "10.244.9.9").write_text("legacy-keep")
    plugin.cmd_gc(
        args(
            {**c, key: [{"containerID": "keep", "ifname": "eth0"}, {"containerID": "legacy-keep", "ifname": "x"}]},
            command="GC",
        )
    )
    held = {n: (tmp_path / "net1" / n).read_text() for n in os.listdir(tmp_path / "net1") if n[0].isdigit()}
    assert set(held) == {"10.244.9.2", "10.244.9.9"}


def test_gc_without_attachment_list_is_code_7(tmp_path: Path) -> None:
    with pytest.raises(skel.CniError) as e:
        plugin.cmd_gc(args(conf(tmp_path), command="GC"))
    assert e.value.code == 7 and "valid-attachments" in e.value.msg


def test_status_reports_exhausted_range_with_code_50(tmp_path: Path) -> None:
    c = conf(tmp_path, ranges=[[{"subnet": "10.244.9.0/24", "rangeStart": "10.244.9.2", "rangeEnd": "10.244.9.3"}]])
    plugin.cmd_status(args(c, command="STATUS"))
    plugin.cmd_add(args(c, cid="a"))
    plugin.cmd_status(args(c, command="STATUS"))
    plugin.cmd_add(args(c, cid="b"))
    with pytest.raises(skel.CniError) as e:
        plugin.cmd_status(args(c, command="STATUS"))
    assert e.value.code == 50 and "10.244.9.2-10.244.9.3" in e.value.msg


def test_exhausted_add_changes_nothing(tmp_path: Path) -> None:
    c = conf(tmp_path, ranges=[[{"subnet": "10.244.9.0/24", "rangeStart": "10.244.9.2", "rangeEnd": "10.244.9.2"}]])
    plugin.cmd_add(args(c, cid="a"))
    before = {n: (tmp_path / "net1" / n).read_bytes() for n in os.listdir(tmp_path / "net1")}
    with pytest.raises(skel.CniError) as e:
        plugin.cmd_add(args(c, cid="b"))
    assert e.value.code == 11
    after = {n: (tmp_path / "net1" / n).read_bytes() for n in os.listdir(tmp_path / "net1")}
    assert before == after


def test_resolv_conf_becomes_dns(tmp_path: Path) -> None:
    rc = tmp_path / "resolv.conf"
    rc.write_text("# c\nnameserver 10.96.0.10\nsearch default.svc.cluster.local svc.cluster.local\noptions ndots:5\n")
    res = plugin.cmd_add(args(conf(tmp_path, resolvConf=str(rc))))
    assert res["dns"] == {
        "nameservers": ["10.96.0.10"],
        "search": ["default.svc.cluster.local", "svc.cluster.local"],
        "options": ["ndots:5"],
    }


def test_disk_store_reserve_is_exclusive(tmp_path: Path) -> None:
    s = DiskStore(str(tmp_path), "n")
    with s:
        assert s.reserve("a", "eth0", IP.parse("10.0.0.2"), 0)
        assert not s.reserve("b", "eth0", IP.parse("10.0.0.2"), 0)
        assert s.last_reserved_ip(0) == IP.parse("10.0.0.2")
