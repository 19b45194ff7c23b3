"""The CNI protocol layer (netplugin.skel, jsonfast, ipnet): env, versions, errors, result shapes.

Each spec rule is one test; the plugins are driven in-process through ``skel.dispatch`` with an
injected environment, stdin and stdout.
"""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from netplugin import skel
from netplugin.fast import jsonfast
from netplugin.fast.ipnet import IP, IPNet

ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "ctr1",
    "CNI_NETNS": "/var/run/netns/x",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
}
CONF = {"cniVersion": "1.1.0", "name": "net", "type": "t"}


def run(env: dict[str, str], conf: Any, handler_result: dict[str, Any] | None = None) -> tuple[int, Any]:
    calls: list[skel.CmdArgs] = []

    def handler(args: skel.CmdArgs) -> dict[str, Any] | None:
        calls.append(args)
        return handler_result

    out = io.StringIO()
    stdin = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    handlers = {c: handler for c in ("ADD", "DEL", "CHECK", "GC", "STATUS")}
    rc = skel.dispatch(handlers, prefix="test", environ=env, stdin=stdin, stdout=out)
    text = out.getvalue()
    return rc, (json.loads(text) if text else None)


def test_version_lists_supported_versions() -> None:
    rc, out = run({"CNI_COMMAND": "VERSION"}, {"cniVersion": "1.0.0"})
    assert rc == 0
    assert out == {"cniVersion": "1.0.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}


def test_version_works_with_empty_stdin() -> None:
    rc, out = run({"CNI_COMMAND": "VERSION"}, b"")
    assert rc == 0 and "1.1.0" in out["supportedVersions"]


@pytest.mark.parametrize("missing", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"])
def test_add_missing_variable_is_code_4_naming_it(missing: str) -> None:
    env = {k: v for k, v in ENV.items() if k != missing}
    rc, out = run(env, CONF)
    assert rc == 1
    assert out["code"] == 4 and missing in out["msg"]


def test_missing_command_is_code_4() -> None:
    rc, out = run({k: v for k, v in ENV.items() if k != "CNI_COMMAND"}, CONF)
    assert (rc, out["code"]) == (1, 4) and "CNI_COMMAND" in out["msg"]


def test_unknown_command_is_code_4_naming_it() -> None:
    _rc, out = run({**ENV, "CNI_COMMAND": "FROB"}, CONF)
    assert out["code"] == 4 and "FROB" in out["msg"]


def test_del_does_not_need_netns() -> None:
    env = {k: v for k, v in ENV.items() if k != "CNI_NETNS"}
    rc, out = run({**env, "CNI_COMMAND": "DEL"}, CONF)
    assert rc == 0 and out is None


def test_malformed_json_is_code_6() -> None:
    rc, out = run(ENV, b'{"cniVersion": "1.1.0", "name": ')
    assert rc == 1 and out["code"] == 6 and "stdin" in out["msg"]


def test_non_object_config_is_code_6() -> None:
    _rc, out = run(ENV, [1, 2])
    assert out["code"] == 6


def test_unknown_cni_version_is_code_1_naming_it() -> None:
    rc, out = run(ENV, {**CONF, "cniVersion": "9.9.9"})
    assert rc == 1 and out["code"] == 1 and "9.9.9" in out["msg"]


def test_missing_cni_version_is_code_7() -> None:
    conf = {k: v for k, v in CONF.items() if k != "cniVersion"}
    _rc, out = run(ENV, conf)
    assert out["code"] == 7 and "cniVersion" in out["msg"]


def test_missing_name_is_code_7() -> None:
    _rc, out = run(ENV, {"cniVersion": "1.0.0", "type": "t"})
    assert out["code"] == 7 and "'name'" in out["msg"]


def test_check_needs_0_4_0() -> None:
    _rc, out = run({**ENV, "CNI_COMMAND": "CHECK"}, {**CONF, "cniVersion": "0.3.1"})
    assert out["code"] == 1 and "CHECK" in out["msg"]


@pytest.mark.parametrize("cmd", ["GC", "STATUS"])
def test_gc_and_status_need_1_1_0(cmd: str) -> None:
    _rc, out = run({"CNI_COMMAND": cmd, "CNI_PATH": "/x"}, {**CONF, "cniVersion": "1.0.0"})
    assert out["code"] == 1 and cmd in out["msg"]


@pytest.mark.parametrize("cid", ["-abc", "a b", "a/b", ""])
def test_bad_container_id_is_code_4(cid: str) -> None:
    _rc, out = run({**ENV, "CNI_CONTAINERID": cid}, CONF)
    assert out["code"] == 4 and "CNI_CONTAINERID" in out["msg"]


@pytest.mark.parametrize("ifname", ["a" * 16, "eth/0", "eth 0", "."])
def test_bad_ifname_is_code_4(ifname: str) -> None:
    _rc, out = run({**ENV, "CNI_IFNAME": ifname}, CONF)
    assert out["code"] == 4 and "CNI_IFNAME" in out["msg"]


def test_error_carries_config_version() -> None:
    _rc, out = run({**ENV, "CNI_NETNS": ""}, {**CONF, "cniVersion": "0.4.0"})
    assert out["cniVersion"] == "0.4.0"


RESULT = {
    "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/x"}],
    "ips": [
        {"address": "10.0.0.2/24", "gateway": "10.0.0.1", "interface": 0},
        {"address": "fd00::2/64", "interface": 0},
    ],
    "routes": [{"dst": "0.0.0.0/0"}],
    "dns": {},
}


@pytest.mark.parametrize("version", ["1.1.0", "1.0.0"])
def test_result_1x_has_no_ip_version(version: str) -> None:
    rc, out = run(ENV, {**CONF, "cniVersion": version}, RESULT)
    assert rc == 0 and out["cniVersion"] == version
    assert all("version" not in ip for ip in out["ips"])


def test_result_0_4_0_has_ip_version() -> None:
    _rc, out = run(ENV, {**CONF, "cniVersion": "0.4.0"}, RESULT)
    assert [ip["version"] for ip in out["ips"]] == ["4", "6"]
    assert out["interfaces"] == RESULT["interfaces"]


def test_parse_result_reads_0_4_0_prev_result() -> None:
    prev = {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.0.0.2/24", "interface": 0}]}
    parsed = skel.parse_result(prev)
    assert parsed["ips"] == [{"address": "10.0.0.2/24", "interface": 0}]


def test_parse_result_rejects_unknown_version() -> None:
    with pytest.raises(skel.CniError) as e:
        skel.parse_result({"cniVersion": "7.0.0"})
    assert e.value.code == 1


def test_handler_cni_error_is_printed_with_code() -> None:
    def boom(args: skel.CmdArgs) -> None:
        raise skel.CniError(7, "bad key 'x'", "details")

    out = io.StringIO()
    rc = skel.dispatch({"ADD": boom}, prefix="t", environ=ENV, stdin=json.dumps(CONF).encode(), stdout=out)
    assert rc == 1 and json.loads(out.getvalue()) == {
        "cniVersion": "1.1.0",
        "code": 7,
        "msg": "bad key 'x'",
        "details": "details",
    }


def test_logs_never_go_to_stdout(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    log = tmp_path / "cni.log"
    rc, _out = run(ENV, {**CONF, "logFile": str(log)}, RESULT)
    skel.log("INFO", "hello", k="v")
    assert rc == 0
    assert "hello k=v" in log.read_text()
    assert capsys.readouterr().out == ""
    skel._log_file = None


def test_cni_args_parsing() -> None:
    args = skel.parse_invocation({**ENV, "CNI_ARGS": "K8S_POD_NAME=a;IgnoreUnknown=1"}, json.dumps(CONF).encode())
    assert args.cni_args() == {"K8S_POD_NAME": "a", "IgnoreUnknown": "1"}
    bad = skel.parse_invocation({**ENV, "CNI_ARGS": "novalue"}, json.dumps(CONF).encode())
    with pytest.raises(skel.CniError) as e:
        bad.cni_args()
    assert e.value.code == 4


# --- jsonfast and ipnet ---


@pytest.mark.parametrize("text", ['{"a": [1, 2.5, "x\\u00e9", null, true, false]}', " [] ", '"s"', "0"])
def test_jsonfast_matches_json(text: str) -> None:
    assert jsonfast.loads(text) == json.loads(text)
    assert json.loads(jsonfast.dumps(json.loads(text))) == json.loads(text)


@pytest.mark.parametrize("text", ["", "{", '{"a": 1} x', "NaN", "[1,]", '{"a" 1}', b"\xff"])
def test_jsonfast_rejects_bad_json(text: str | bytes) -> None:
    with pytest.raises(jsonfast.DecodeError):
        jsonfast.loads(text)


def test_ipnet_arithmetic() -> None:
    net = IPNet.parse("10.244.1.7/24")
    assert str(net) == "10.244.1.0/24" and str(net.ip) == "10.244.1.7"
    assert str(net.last) == "10.244.1.255"
    assert net.contains(IP.parse("10.244.1.200")) and not net.contains(IP.parse("10.244.2.1"))
    v6 = IPNet.parse("fd00::5/120")
    assert str(v6.network + 1) == "fd00::1" and str(v6.last) == "fd00::ff"
    for bad in ["10.0.0.1", "10.0.0.0/33", "x/24", "10.0.0.256/24"]:
        with pytest.raises(ValueError):
            IPNet.parse(bad)


def test_thin_client_forwards_path_and_cni_variables_only() -> None:
    # Regression: PATH was matched as the prefix b"PATH=" against bare keys and never forwarded, so
    # the server's child could not find iptables-restore (ipMasq) and every ADD failed in the lab.
    from netplugin.fast import thin

    env = {b"PATH": b"/usr/sbin:/usr/bin", b"CNI_COMMAND": b"ADD", b"KUBELAB_X": b"1", b"HOME": b"/root",
           b"PATHEXT": b"nope"}  # fmt: skip
    sent = dict(item.split(b"=", 1) for item in thin.forwarded_env(env).split(b"\0"))
    assert sent == {b"PATH": b"/usr/sbin:/usr/bin", b"CNI_COMMAND": b"ADD", b"KUBELAB_X": b"1"}
