"""``kubelab-bridge``: the CNI 1.1 bridge plugin (pods on a Linux bridge, addresses from IPAM).

ADD, step by step (each step that changes something pushes its compensation on an ``Undo``
stack; a failure in any later step runs them in reverse, so a failed ADD leaves no veth, no
address reservation and no rule behind — spec: "every ADD must eventually get a DEL", but we do
not rely on it):

  0. validate the config and environment; the container interface must not exist yet;
  1. delegate to the IPAM plugin named by ``ipam.type`` found on ``CNI_PATH`` with the same
     environment and the whole config (undo: IPAM DEL). It goes first (the reference bridge
     runs it after making the veth) so that bad IPAM input — a subnet too small, an exhausted
     range — fails before anything on the node changed, not even the bridge;
  2. ensure the bridge (default ``cni0``), up, with ``mtu``/``promiscMode`` (shared: never undone);
  3. create the veth pair: the host end ``veth<8 hex of sha256(containerID + ifname)>`` enslaved
     to the bridge, the peer created directly inside ``CNI_NETNS`` as ``CNI_IFNAME``
     (undo: delete the host end, which takes the peer with it);
  4. ``hairpinMode`` on the bridge port (a pod reaching itself through its own Service VIP);
  5. work out gateways (``isGateway``: the subnet's first address) and routes
     (``isDefaultGateway``: a default route via the gateway);
  6. configure the container interface: ``arp_notify``, addresses, routes;
  7. ``isGateway``: the gateway address on the bridge and ``ip_forward=1`` in the plugin's namespace;
  8. ``ipMasq``: SNAT rules (see ``masq.py``; undo: remove them);
  9. result: interfaces [bridge, host veth, container veth], ips, routes, dns — appended to a
     ``prevResult`` when there is one.

DEL is best effort and idempotent: the container interface (when the netns still exists), the
host end (when still there), IPAM DEL (always, even with no netns), the masquerade rules.
CHECK verifies the interfaces, the addresses and routes of ``prevResult``, the IPAM reservation
(delegated CHECK) and the masquerade rules. STATUS and GC are delegated to IPAM (GC also removes
masquerade chains of attachments that are no longer valid).

Delegation fast path: when the IPAM plugin found on ``CNI_PATH`` is ``kubelab-ipam`` itself (an
executable of ours that imports ``netplugin.ipam``), it is run in-process with the same inputs,
which is observably the same as exec'ing it and saves a second interpreter start (~10 ms, most of
the budget). ``KUBELAB_CNI_EXEC_IPAM=1`` forces the exec. Any other IPAM (``host-local``, …) is
exec'd exactly as the spec says.
"""

from __future__ import annotations

import sys

from netplugin import skel
from netplugin.fast import jsonfast, procs
from netplugin.fast.ipnet import IPNet, sha256_hex
from netplugin.netlink import LinkExists, LinkNotFound, NetlinkError, NetnsNotFound, NetOpError
from netplugin.skel import CmdArgs, CniError

TYPE_CHECKING = False  # no `typing` at run time on the exec path: netplugin/fast/README.md
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from netplugin.masq import Masq
    from netplugin.netlink import Netlink

PREFIX = "kubelab-bridge"
DEFAULT_BRIDGE = "cni0"
# Keys of the reference bridge we do not implement: refuse them (spec error 2) rather than
# silently do something else.
UNSUPPORTED_KEYS = (
    "vlan",
    "vlanTrunk",
    "macspoofchk",
    "portIsolation",
    "disableContainerInterface",
    "preserveDefaultVlan",
)


def host_veth_name(container_id: str, ifname: str) -> str:
    """``veth`` + 8 hex characters: deterministic (a retry or DEL finds it), ≤ IFNAMSIZ-1."""
    return "veth" + sha256_hex(container_id + ifname)[:8]


class BridgeConf:
    __slots__ = (
        "bridge",
        "hairpin",
        "ipam",
        "ipam_type",
        "is_default_gw",
        "is_gw",
        "masq",
        "masq_exclude",
        "mtu",
        "name",
        "promisc",
    )

    def __init__(self, conf: dict[str, Any], need_ipam: bool = True) -> None:
        def flag(key: str) -> bool:
            v = conf.get(key, False)
            if not isinstance(v, bool):
                raise CniError(skel.INVALID_CONFIG, f"'{key}' must be true or false, not {v!r}")
            return v

        self.name = str(conf.get("name", ""))
        for key in UNSUPPORTED_KEYS:
            if conf.get(key) not in (None, False, 0, [], ""):
                raise CniError(
                    skel.UNSUPPORTED_FIELD,
                    f"unsupported field '{key}'={conf[key]!r}: kubelab-bridge does not implement it",
                )
        self.bridge = conf.get("bridge", DEFAULT_BRIDGE) or DEFAULT_BRIDGE
        if not isinstance(self.bridge, str):
            raise CniError(skel.INVALID_CONFIG, f"'bridge' must be an interface name, not {self.bridge!r}")
        try:
            skel.check_ifname(self.bridge, "bridge name")
        except CniError as exc:
            raise CniError(skel.INVALID_CONFIG, f"'bridge': {exc.msg}") from None
        self.is_default_gw = flag("isDefaultGateway")
        self.is_gw = flag("isGateway") or self.is_default_gw
        self.masq = flag("ipMasq")
        self.hairpin = flag("hairpinMode")
        self.promisc = flag("promiscMode")
        if self.hairpin and self.promisc:
            raise CniError(skel.INVALID_CONFIG, "cannot set both 'hairpinMode' and 'promiscMode'")
        backend = conf.get("ipMasqBackend", "iptables")
        if backend not in ("iptables", None):
            raise CniError(skel.UNSUPPORTED_FIELD, f"unsupported field 'ipMasqBackend'={backend!r}: only 'iptables'")
        excl = conf.get("ipMasqExclude", [])
        if not isinstance(excl, list) or not all(isinstance(c, str) for c in excl):
            raise CniError(skel.INVALID_CONFIG, "'ipMasqExclude' must be a list of CIDRs")
        for c in excl:
            try:
                IPNet.parse(c)
            except ValueError as exc:
                raise CniError(skel.INVALID_CONFIG, f"'ipMasqExclude': {exc}") from None
        self.masq_exclude: list[str] = excl
        mtu = conf.get("mtu")
        if mtu is not None and (not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 65535):
            raise CniError(skel.INVALID_CONFIG, f"'mtu' must be an integer between 68 and 65535, not {mtu!r}")
        self.mtu: int | None = mtu
        ipam = conf.get("ipam")
        self.ipam: dict[str, Any] | None = ipam if isinstance(ipam, dict) else None
        self.ipam_type = str(self.ipam.get("type", "")) if self.ipam else ""
        if need_ipam and not self.ipam_type:
            raise CniError(
                skel.INVALID_CONFIG, "network configuration is missing 'ipam' with a 'type' (the IPAM plugin)"
            )
        if self.ipam_type and ("/" in self.ipam_type or self.ipam_type in (".", "..")):
            raise CniError(skel.INVALID_CONFIG, f"invalid 'ipam.type' {self.ipam_type!r}: a plugin name, not a path")


class Undo:
    """A stack of compensations (``contextlib.ExitStack``'s role, without its ~5 ms import)."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Callable[[], object]]] = []

    def push(self, what: str, fn: Callable[[], object]) -> None:
        self.steps.append((what, fn))

    def commit(self) -> None:
        self.steps.clear()

    def run(self) -> None:
        while self.steps:
            what, fn = self.steps.pop()
            try:
                fn()
                skel.log("INFO", "undone", step=what)
            except Exception as exc:  # keep undoing the rest; report this one in the log
                skel.log("WARNING", f"undo of {what} failed: {exc}")


# --- delegation (spec "Delegated plugins") -----------------------------------------------------


def _is_kubelab_ipam(path: str) -> bool:
    """Is this executable our IPAM launcher (Python) or our native thin client (its Python
    fallback launcher sits beside it as ``<path>.py``)?"""
    try:
        with open(path, "rb") as f:
            head = f.read(2048)
        if head.startswith(b"\x7fELF"):
            with open(path + ".py", "rb") as f:
                head = f.read(2048)
    except OSError:
        return False
    return head.startswith(b"#!") and (b"netplugin.ipam" in head or b"main_ipam" in head)


def delegate(args: CmdArgs, ipam_type: str, command: str) -> dict[str, Any] | None:
    """Run the IPAM plugin for ``command`` with our environment and the complete config."""
    exe = procs.find_executable(ipam_type, args.path)
    if exe is None:
        raise CniError(
            skel.INVALID_CONFIG,
            f"failed to find IPAM plugin 'ipam.type'={ipam_type!r} in CNI_PATH {':'.join(args.path)!r}",
        )
    if _is_kubelab_ipam(exe) and args.environ.get("KUBELAB_CNI_EXEC_IPAM") != "1":
        from netplugin.ipam import plugin as ipam_plugin

        sub = CmdArgs(
            command,
            args.container_id,
            args.netns,
            args.ifname,
            args.args,
            args.path,
            args.conf,
            args.stdin,
            args.environ,
        )
        handler = ipam_plugin.HANDLERS[command]
        res = handler(sub)
        return skel.parse_result(res, "ipam result") if res is not None else None
    env = dict(args.environ)
    env.update(
        CNI_COMMAND=command,
        CNI_CONTAINERID=args.container_id,
        CNI_NETNS=args.netns,
        CNI_IFNAME=args.ifname,
        CNI_ARGS=args.args,
        CNI_PATH=":".join(args.path),
    )
    rc, out, _err = procs.run([exe], args.stdin, env=env)
    if rc != 0:
        try:
            err = jsonfast.loads(out)
        except jsonfast.DecodeError:
            err = None
        if isinstance(err, dict) and "code" in err:
            raise CniError(
                int(err["code"]), f"IPAM plugin {ipam_type}: {err.get('msg', '')}", str(err.get("details", ""))
            )
        raise CniError(
            skel.INTERNAL, f"IPAM plugin {ipam_type} {command} failed (exit {rc}): {out.decode(errors='replace')[:300]}"
        )
    if command != "ADD":
        return None
    try:
        raw = jsonfast.loads(out)
    except jsonfast.DecodeError as exc:
        raise CniError(skel.DECODE_FAILURE, f"IPAM plugin {ipam_type} printed an undecodable result: {exc}") from None
    return skel.parse_result(raw, "ipam result")


# --- commands ------------------------------------------------------------------------------


def _drivers(nl: Netlink | None) -> Netlink:
    if nl is not None:
        return nl
    from netplugin.fast.rtnl import RtNetlink

    return RtNetlink()


def _masq(m: Masq | None) -> Masq:
    if m is not None:
        return m
    from netplugin.masq import Masq as M

    return M()


def _net_error(exc: NetOpError, args: CmdArgs) -> CniError:
    if isinstance(exc, NetnsNotFound):
        return CniError(skel.INVALID_ENV, f"CNI_NETNS {args.netns!r}: {exc}")
    return CniError(skel.NETLINK_FAILURE, str(exc))


def _gateways(conf: BridgeConf, ips: list[dict[str, Any]]) -> dict[int, str]:
    """Fill ``ips[].gateway`` when ``isGateway`` (subnet's first address); family → gateway."""
    gws: dict[int, str] = {}
    for ip in ips:
        net = IPNet.parse(ip["address"])
        if conf.is_gw and not ip.get("gateway"):
            ip["gateway"] = str(net.network + 1)
        if ip.get("gateway") and net.family not in gws:
            gws[net.family] = ip["gateway"]
    return gws


def cmd_add(args: CmdArgs, nl: Netlink | None = None, masq: Masq | None = None) -> dict[str, Any]:
    conf = BridgeConf(args.conf)
    prev = skel.parse_result(args.conf["prevResult"]) if args.conf.get("prevResult") else None
    nl = _drivers(nl)
    undo = Undo()
    try:
        # Step 0: nothing to do if the namespace is missing or the interface is already there.
        if not nl.netns_exists(args.netns):
            raise CniError(skel.INVALID_ENV, f"CNI_NETNS {args.netns!r} does not exist")
        if nl.get_link(args.ifname, args.netns) is not None:
            raise CniError(skel.INVALID_ENV, f"CNI_IFNAME {args.ifname!r} already exists in CNI_NETNS {args.netns!r}")
        # Step 1: addresses from IPAM (DEL on any later failure).
        ipam_res = delegate(args, conf.ipam_type, "ADD") or {}
        undo.push("ipam", lambda: delegate(args, conf.ipam_type, "DEL"))
        ips = [dict(ip) for ip in ipam_res.get("ips", [])]
        if not ips:
            raise CniError(skel.INVALID_CONFIG, f"IPAM plugin {conf.ipam_type} returned no IP configuration")
        # Step 2: the bridge.
        br = nl.ensure_bridge(conf.bridge, conf.mtu, conf.promisc)
        # Step 3: the veth pair, peer straight into the container's namespace.
        host_if = host_veth_name(args.container_id, args.ifname)
        try:
            nl.create_veth(host_if, args.ifname, args.netns, conf.mtu, br.index)
        except LinkExists:
            # The container side is absent (checked above), so a host end of this name is a
            # leftover of an earlier failed attempt for this same attachment: replace it.
            if not nl.delete_link(host_if):
                raise
            nl.create_veth(host_if, args.ifname, args.netns, conf.mtu, br.index)
        undo.push("veth", lambda: nl.delete_link(host_if))
        skel.log("INFO", "veth created", host=host_if, container=args.container_id, ifname=args.ifname)
        # Step 4: hairpin on the bridge port.
        if conf.hairpin:
            nl.set_hairpin(host_if, True)
        # Step 5: gateways and routes.
        gws = _gateways(conf, ips)
        routes = [dict(r) for r in ipam_res.get("routes", [])]
        if conf.is_default_gw:
            for fam, family_gw in gws.items():
                default = "0.0.0.0/0" if fam == 4 else "::/0"
                if not any(r.get("dst") == default for r in routes):
                    routes.append({"dst": default, "gw": family_gw})
        # Step 6: the container interface.
        nl.set_sysctl(f"net/ipv4/conf/{args.ifname}/arp_notify", "1", args.netns)
        for ip in ips:
            nl.add_address(args.ifname, ip["address"], args.netns)
        for r in routes:
            fam = 6 if ":" in r["dst"] else 4
            gw: str | None = r.get("gw") or gws.get(fam)
            nl.add_route(r["dst"], gw, args.ifname, args.netns)
        # Step 7: the gateway side on the bridge.
        if conf.is_gw:
            for ip in ips:
                net = IPNet.parse(ip["address"])
                nl.add_address(conf.bridge, f"{ip['gateway']}/{net.prefix}")
            for fam in {IPNet.parse(ip["address"]).family for ip in ips}:
                key = "net/ipv4/ip_forward" if fam == 4 else "net/ipv6/conf/all/forwarding"
                if nl.get_sysctl(key) != "1":
                    nl.set_sysctl(key, "1")
        # Step 8: masquerade for traffic leaving the cluster.
        if conf.masq:
            m = _masq(masq)
            pod_ips = [(str(IPNet.parse(ip["address"]).ip), str(IPNet.parse(ip["address"]))) for ip in ips]
            undo.push("ipMasq", lambda: m.teardown(conf.name, args.container_id, pod_ips=[ip for ip, _ in pod_ips]))
            m.setup(conf.name, args.container_id, pod_ips, conf.masq_exclude)
        # Step 9: the result (bridge MAC re-read: it follows the lowest port MAC until set).
        links = [nl.get_link(conf.bridge), nl.get_link(host_if), nl.get_link(args.ifname, args.netns)]
        if any(link is None for link in links):
            raise CniError(skel.NETLINK_FAILURE, "an interface vanished during ADD")
        interfaces: list[dict[str, Any]] = [
            {"name": links[0].name, "mac": links[0].mac},  # type: ignore[union-attr]
            {"name": links[1].name, "mac": links[1].mac},  # type: ignore[union-attr]
            {"name": args.ifname, "mac": links[2].mac, "sandbox": args.netns},  # type: ignore[union-attr]
        ]
        base = len(prev.get("interfaces", [])) if prev else 0
        for ip in ips:
            ip["interface"] = base + 2
        result: dict[str, Any] = {
            "interfaces": (prev.get("interfaces", []) if prev else []) + interfaces,
            "ips": (prev.get("ips", []) if prev else []) + ips,
            "routes": (prev.get("routes", []) if prev else []) + routes,
            "dns": ipam_res.get("dns") or (prev.get("dns", {}) if prev else {}),
        }
        undo.commit()
        skel.log("INFO", "ADD done", container=args.container_id, ips=",".join(ip["address"] for ip in ips))
        return result
    except NetOpError as exc:
        undo.run()
        raise _net_error(exc, args) from None
    except OSError as exc:
        undo.run()
        raise CniError(skel.IO_FAILURE, f"{type(exc).__name__}: {exc}") from None
    except BaseException:
        undo.run()
        raise
    finally:
        nl.close()


def _prev_pod_ips(args: CmdArgs) -> list[str]:
    """The pod addresses of a DEL's prevResult (our interface's), or [] when there is none."""
    try:
        prev = skel.parse_result(args.conf["prevResult"]) if args.conf.get("prevResult") else {}
    except CniError:
        return []  # DEL is best effort: a bad prevResult only costs the slower path
    ifaces = prev.get("interfaces", [])
    out = []
    for ip in prev.get("ips", []):
        idx = ip.get("interface")
        if isinstance(idx, int) and 0 <= idx < len(ifaces) and ifaces[idx].get("name") != args.ifname:
            continue
        out.append(str(ip["address"]).split("/")[0])
    return out


def cmd_del(args: CmdArgs, nl: Netlink | None = None, masq: Masq | None = None) -> None:
    conf = BridgeConf(args.conf)
    nl = _drivers(nl)
    errors: list[str] = []
    try:
        # The container end first (it takes the host end with it); a gone netns or interface is fine.
        if args.netns and nl.netns_exists(args.netns):
            try:
                nl.delete_link(args.ifname, args.netns)
            except (LinkNotFound, NetnsNotFound):
                pass
        try:
            nl.delete_link(host_veth_name(args.container_id, args.ifname))
        except LinkNotFound:
            pass
    except NetlinkError as exc:
        errors.append(str(exc))  # still release the address below
    finally:
        nl.close()
    delegate(args, conf.ipam_type, "DEL")
    if conf.masq:
        try:
            _masq(masq).teardown(conf.name, args.container_id, pod_ips=_prev_pod_ips(args))
        except OSError as exc:
            errors.append(str(exc))
    if errors:
        raise CniError(skel.NETLINK_FAILURE, "; ".join(errors))
    skel.log("INFO", "DEL done", container=args.container_id, ifname=args.ifname)


def cmd_check(args: CmdArgs, nl: Netlink | None = None, masq: Masq | None = None) -> None:
    conf = BridgeConf(args.conf)
    if not args.conf.get("prevResult"):
        raise CniError(skel.INVALID_CONFIG, "CHECK needs 'prevResult' (the result of ADD) in the configuration")
    prev = skel.parse_result(args.conf["prevResult"])
    delegate(args, conf.ipam_type, "CHECK")
    nl = _drivers(nl)

    def fail(msg: str) -> CniError:
        return CniError(skel.CHECK_FAILED, msg)

    try:
        if not nl.netns_exists(args.netns):
            raise CniError(skel.INVALID_ENV, f"CNI_NETNS {args.netns!r} does not exist")
        br = nl.get_link(conf.bridge)
        if br is None or br.kind != "bridge":
            raise fail(f"bridge {conf.bridge} is missing")
        cont = nl.get_link(args.ifname, args.netns)
        if cont is None:
            raise fail(f"interface {args.ifname} is missing in {args.netns}")
        host_if = host_veth_name(args.container_id, args.ifname)
        host = nl.get_link(host_if)
        if host is None or host.master != br.index:
            raise fail(f"host interface {host_if} is missing or not a port of {conf.bridge}")
        if conf.hairpin and not nl.get_hairpin(host_if):
            raise fail(f"hairpin mode is off on {host_if}")
        ifaces = prev.get("interfaces", [])
        have = set(nl.addresses(args.ifname, args.netns))
        for ip in prev.get("ips", []):
            idx = ip.get("interface")
            if isinstance(idx, int) and 0 <= idx < len(ifaces) and ifaces[idx].get("name") != args.ifname:
                continue  # another plugin's interface
            if ip["address"] not in have:
                raise fail(f"address {ip['address']} is missing on {args.ifname}")
        routes = nl.routes(args.netns)
        for r in prev.get("routes", []):
            if not any(x.dst == str(IPNet.parse(r["dst"])) and x.oif == cont.index for x in routes):
                raise fail(f"route to {r['dst']} is missing in {args.netns}")
    except NetOpError as exc:
        raise _net_error(exc, args) from None
    finally:
        nl.close()
    if conf.masq and not _masq(masq).exists(conf.name, args.container_id):
        raise fail(f"ipMasq rules for container {args.container_id} are missing")


def cmd_status(args: CmdArgs) -> None:
    conf = BridgeConf(args.conf)
    delegate(args, conf.ipam_type, "STATUS")


def cmd_gc(args: CmdArgs, masq: Masq | None = None) -> None:
    conf = BridgeConf(args.conf)
    errors = []
    try:
        delegate(args, conf.ipam_type, "GC")
    except CniError as exc:
        errors.append(exc.msg)  # continue with our own resources, then report (spec: GC)
    if conf.masq:
        valid = args.conf.get("cni.dev/valid-attachments", args.conf.get("cni.dev/attachments")) or []
        ids = {a.get("containerID") for a in valid if isinstance(a, dict)}
        try:
            _masq(masq).gc(conf.name, {i for i in ids if isinstance(i, str)})
        except OSError as exc:
            errors.append(str(exc))
    if errors:
        raise CniError(skel.IO_FAILURE, "GC: " + "; ".join(errors))


HANDLERS: dict[str, Callable[[CmdArgs], dict[str, Any] | None]] = {
    "ADD": cmd_add,
    "DEL": cmd_del,
    "CHECK": cmd_check,
    "STATUS": cmd_status,
    "GC": cmd_gc,
}


def main() -> int:
    return skel.dispatch(HANDLERS, prefix=PREFIX)


if __name__ == "__main__":
    sys.exit(main())
