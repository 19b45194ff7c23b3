"""Concurrency and leaks: parallel ADDs from many processes, and many ADD/DEL cycles.

- 50 ADDs exec'd at once (50 plugin processes racing on the IPAM flock and the bridge) get 50
  distinct addresses; 50 DELs leave nothing.
- 1,000 ADD/DEL cycles run in-process (4 Python processes × 250 cycles under ``ip netns exec``,
  each calling ``skel.dispatch`` as an exec would, one pod namespace each) plus 20 exec'd cycles
  with ``ipMasq`` on: afterwards no veth, no IP file, no iptables rule and no extra namespace
  remain. The floor is the kernel: deleting a veth pair takes ~20 ms here (RCU grace periods
  under RTNL), so a cycle costs ~25 ms whoever runs it; 4 workers overlap part of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.helpers.netns import sh
from tests.privileged.netplugin.conftest import CniEnv

ROOT = str(Path(__file__).resolve().parents[3])


def our_netns() -> set[str]:
    """This test process's namespaces (other test processes may be making theirs meanwhile)."""
    mine = f"kltest-{os.getpid()}-"
    return {n for line in sh("ip", "netns", "list").splitlines() if line and (n := line.split()[0]).startswith(mine)}


def test_50_parallel_adds_get_50_distinct_ips(cni: CniEnv) -> None:
    pods = [cni.pod(f"p{i}") for i in range(50)]
    conf = cni.conf()

    def add(i: int) -> str:
        res = cni.run("ADD", conf, netns=pods[i], cid=f"par{i}")
        assert res is not None
        return str(res["ips"][0]["address"])

    with ThreadPoolExecutor(max_workers=50) as pool:
        ips = list(pool.map(add, range(50)))
    assert len(set(ips)) == 50
    assert len(cni.reserved()) == 50
    assert len([x for x in cni.links() if x.startswith("veth")]) == 50
    with ThreadPoolExecutor(max_workers=50) as pool:
        list(pool.map(lambda i: cni.run("DEL", conf, netns=pods[i], cid=f"par{i}"), range(50)))
    assert cni.reserved() == [] and cni.links() == ["cni0", "lo"]


CYCLES = """
import io, json, sys
sys.path.insert(0, sys.argv[1])
from netplugin import bridge, skel
conf, netns, n, cni_path, w = sys.argv[2].encode(), sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
for i in range(n):
    for cmd in ("ADD", "DEL"):
        env = {"CNI_COMMAND": cmd, "CNI_CONTAINERID": f"cyc{w}-{i}", "CNI_NETNS": netns,
               "CNI_IFNAME": "eth0", "CNI_PATH": cni_path}
        out = io.StringIO()
        if skel.dispatch(bridge.HANDLERS, prefix="cycle", environ=env, stdin=conf, stdout=out) != 0:
            sys.exit(f"cycle {i} {cmd}: {out.getvalue()}")
        if cmd == "ADD":
            assert json.loads(out.getvalue())["ips"], out.getvalue()
print(n)
"""


def test_1000_add_del_cycles_leave_nothing_behind(cni: CniEnv) -> None:
    before = our_netns()
    workers = [cni.pod(f"cycle{w}") for w in range(4)]
    conf = cni.conf()
    procs = [
        subprocess.Popen(
            [
                *cni.wrapper,
                sys.executable,
                "-c",
                CYCLES,
                ROOT,
                json.dumps(conf),
                pod,
                "250",
                ":".join(cni.cni_path),
                str(w),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w, pod in enumerate(workers)
    ]
    done = 0
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        done += int(out.strip())
    assert done == 1000
    pod = workers[0]
    masq = cni.conf(ipMasq=True, ipMasqExclude=["10.244.0.0/16"])
    for i in range(20):  # the real exec path, with masquerade rules
        res = cni.run("ADD", masq, netns=pod, cid=f"exec{i}")
        assert res is not None
        cni.run("DEL", {**masq, "prevResult": res}, netns=pod, cid=f"exec{i}")
    assert cni.links() == ["cni0", "lo"]
    assert cni.reserved() == []
    assert cni.nat_rules() == []
    assert [x for x in cni.sh("ip", "-o", "link", netns=pod).splitlines() if "lo:" not in x] == []
    for w in workers:
        assert [x for x in cni.sh("ip", "-o", "link", netns=w).splitlines() if "lo:" not in x] == []
    assert our_netns() - before == {Path(w).name for w in workers}  # only the test's own namespaces
