"""``kubelab-ipam``: a host-local compatible IPAM plugin (CNI 1.1), plus GC and STATUS.

Commands (config = the whole network config; ``ipam`` holds host-local's keys, see README):
- ADD: one address per range set for (CNI_CONTAINERID, CNI_IFNAME), round-robin; result
  ``{ips: [{address, gateway}], routes, dns}`` (the abbreviated IPAM result: no interfaces).
  If a later range set fails, the addresses already taken are released (nothing leaks).
- DEL: release every reservation of the attachment; succeeds when there is none (idempotent).
- CHECK: the attachment must hold an address in every range set, and ``prevResult``'s
  addresses in our ranges must be the reserved ones.
- GC: release reservations whose (containerID, ifname) is not in ``cni.dev/valid-attachments``
  (or the older spelling ``cni.dev/attachments``; libcni sends both). Legacy ID-only files are
  kept when any valid attachment has that container ID.
- STATUS: code 50 when some range set has no free address left; the data dir must be writable.

Every operation holds the store's flock for its whole duration (see ``disk.py``).
"""

from __future__ import annotations

import sys

from netplugin import skel
from netplugin.fast.ipnet import IP
from netplugin.ipam.allocator import IPAllocator, parse_ipam_config
from netplugin.ipam.disk import DiskStore
from netplugin.skel import CmdArgs, CniError

TYPE_CHECKING = False  # no `typing` at run time on the exec path: netplugin/fast/README.md
if TYPE_CHECKING:
    from typing import Any

    from netplugin.ipam.allocator import IpamConfig
    from netplugin.ipam.interface import Store

PREFIX = "kubelab-ipam"


def _store(cfg: IpamConfig) -> Store:
    return DiskStore(cfg.data_dir, cfg.name)


def cmd_add(args: CmdArgs, store: Store | None = None) -> dict[str, Any]:
    cfg = parse_ipam_config(args.conf)
    store = store or _store(cfg)
    ips: list[dict[str, Any]] = []
    try:
        with store:
            for rs in cfg.range_sets:
                ip, rng = IPAllocator(rs, store).get(args.container_id, args.ifname)
                entry: dict[str, Any] = {"address": rng.subnet.with_ip(ip)}
                if rng.gateway is not None:
                    entry["gateway"] = str(rng.gateway)
                ips.append(entry)
                skel.log("INFO", "reserved", ip=ip, container=args.container_id, ifname=args.ifname)
            result: dict[str, Any] = {"cniVersion": args.cni_version, "ips": ips, "routes": cfg.routes}
            if cfg.dns:
                result["dns"] = cfg.dns
            return result
    except CniError:
        if ips:  # a later range set failed: give back what the earlier ones took
            with store:
                store.release_by_id(args.container_id, args.ifname)
        raise
    except OSError as exc:
        raise CniError(skel.IO_FAILURE, f"ipam dataDir {cfg.data_dir!r}: {exc.strerror or exc}") from None


def cmd_del(args: CmdArgs, store: Store | None = None) -> None:
    cfg = parse_ipam_config(args.conf)
    store = store or _store(cfg)
    try:
        with store:
            gone = store.release_by_id(args.container_id, args.ifname)
    except OSError as exc:
        raise CniError(skel.IO_FAILURE, f"ipam dataDir {cfg.data_dir!r}: {exc.strerror or exc}") from None
    for ip in gone:
        skel.log("INFO", "released", ip=ip, container=args.container_id, ifname=args.ifname)
    return None


def cmd_check(args: CmdArgs, store: Store | None = None) -> None:
    cfg = parse_ipam_config(args.conf)
    store = store or _store(cfg)
    with store:
        held = []
        for rs in cfg.range_sets:
            ip = IPAllocator(rs, store).find(args.container_id, args.ifname)
            if ip is None:
                raise CniError(
                    skel.INVALID_CONFIG,
                    f"no IP reservation in range set {rs} for container {args.container_id} ifname {args.ifname}",
                )
            held.append(ip)
    prev = args.conf.get("prevResult")
    if prev:
        for entry in skel.parse_result(prev).get("ips", []):
            ip = IP.parse(entry["address"].split("/")[0])
            if any(rs.contains(ip) for rs in cfg.range_sets) and ip not in held:
                raise CniError(
                    skel.INVALID_CONFIG,
                    f"prevResult address {ip} is not reserved for container {args.container_id}",
                )
    return None


def _valid_attachments(conf: dict[str, Any]) -> set[tuple[str, str]]:
    for key in ("cni.dev/valid-attachments", "cni.dev/attachments"):
        raw = conf.get(key)
        if raw is None:
            continue
        if not isinstance(raw, list):
            raise CniError(skel.INVALID_CONFIG, f"{key} must be a list of {{containerID, ifname}}")
        out = set()
        for i, att in enumerate(raw):
            if not isinstance(att, dict) or not isinstance(att.get("containerID"), str):
                raise CniError(skel.INVALID_CONFIG, f"{key}[{i}] needs a string 'containerID'")
            out.add((att["containerID"], str(att.get("ifname", ""))))
        return out
    raise CniError(skel.INVALID_CONFIG, "GC needs 'cni.dev/valid-attachments' in the configuration")


def cmd_gc(args: CmdArgs, store: Store | None = None) -> None:
    cfg = parse_ipam_config(args.conf)
    valid = _valid_attachments(args.conf)
    valid_ids = {cid for cid, _ in valid}
    store = store or _store(cfg)
    with store:
        for ip, cid, ifname in store.reservations():
            keep = (cid, ifname) in valid if ifname else cid in valid_ids
            if not keep:
                store.release(ip)
                skel.log("INFO", "gc released", ip=ip, container=cid, ifname=ifname)
    return None


def cmd_status(args: CmdArgs, store: Store | None = None) -> None:
    cfg = parse_ipam_config(args.conf)
    store = store or _store(cfg)
    try:
        with store:
            for rs in cfg.range_sets:
                if IPAllocator(rs, store).free_count() <= 0:
                    raise CniError(skel.STATUS_NO_ADD, f"no IP addresses available in range set: {rs}")
    except OSError as exc:
        raise CniError(skel.STATUS_NO_ADD, f"ipam dataDir {cfg.data_dir!r} unusable: {exc.strerror or exc}") from None
    return None


HANDLERS = {"ADD": cmd_add, "DEL": cmd_del, "CHECK": cmd_check, "GC": cmd_gc, "STATUS": cmd_status}


def main() -> int:
    return skel.dispatch(HANDLERS, prefix=PREFIX)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main())
