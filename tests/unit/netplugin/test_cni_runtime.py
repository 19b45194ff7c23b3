"""tests.helpers.cniruntime: how a conflist's plugin gets its stdin (spec "Deriving execution
configuration"), and the chain order for ADD/DEL/CHECK, with a scripted recording plugin."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.helpers.cniruntime import Network, PluginError, plugin_conf

CONFLIST = {
    "cniVersion": "1.0.0",
    "name": "net",
    "plugins": [
        {"type": "one", "capabilities": {"portMappings": True}, "x": 1},
        {"type": "two"},
    ],
}

RECORDER = """#!{py}
import json, os, sys
conf = json.loads(sys.stdin.read())
with open({log!r}, "a") as f:
    f.write(json.dumps([os.environ["CNI_COMMAND"], os.path.basename(sys.argv[0]), conf]) + "\\n")
if os.environ["CNI_COMMAND"] == "ADD":
    prev = conf.get("prevResult") or {{"cniVersion": "1.0.0", "ips": []}}
    prev["ips"] = prev["ips"] + [{{"address": "10.0.0.%d/24" % (len(prev["ips"]) + 2)}}]
    print(json.dumps(prev))
if os.environ["CNI_COMMAND"] == "CHECK" and os.path.basename(sys.argv[0]) == "two":
    print(json.dumps({{"cniVersion": "1.0.0", "code": 7, "msg": "scripted CHECK failure"}})); sys.exit(1)
"""


def test_plugin_conf_derivation() -> None:
    conf = plugin_conf(
        CONFLIST, CONFLIST["plugins"][0], {"cniVersion": "1.0.0"}, {"portMappings": [1], "bandwidth": {}}
    )
    assert conf == {
        "type": "one",
        "x": 1,
        "name": "net",
        "cniVersion": "1.0.0",
        "runtimeConfig": {"portMappings": [1]},  # only declared capabilities
        "prevResult": {"cniVersion": "1.0.0"},
    }
    assert "runtimeConfig" not in plugin_conf(CONFLIST, CONFLIST["plugins"][1], None, {"portMappings": [1]})


def test_chain_order_and_prev_result(tmp_path: Path) -> None:
    log = tmp_path / "log"
    for name in ("one", "two"):
        p = tmp_path / name
        p.write_text(RECORDER.format(py=sys.executable, log=str(log)))
        p.chmod(0o755)
    net = Network(CONFLIST, [str(tmp_path)])
    result = net.add("c1", "/x")
    assert [ip["address"] for ip in result["ips"]] == ["10.0.0.2/24", "10.0.0.3/24"]
    net.delete("c1", "/x", result=result)
    with pytest.raises(PluginError) as e:
        net.check("c1", "/x", "eth0", result)
    assert e.value.code == 7 and e.value.plugin == "two"
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(c[0], c[1]) for c in calls] == [
        ("ADD", "one"),
        ("ADD", "two"),
        ("DEL", "two"),
        ("DEL", "one"),
        ("CHECK", "one"),
        ("CHECK", "two"),
    ]
    assert calls[1][2]["prevResult"]["ips"] == [{"address": "10.0.0.2/24"}]  # ADD: previous plugin's result
    assert calls[2][2]["prevResult"] == result and calls[3][2]["prevResult"] == result  # DEL: the final result
    errors = net.gc([("c1", "eth0")])
    assert errors == []
    gc = [json.loads(line) for line in log.read_text().splitlines()][-1][2]
    assert gc["cni.dev/valid-attachments"] == gc["cni.dev/attachments"] == [{"containerID": "c1", "ifname": "eth0"}]
