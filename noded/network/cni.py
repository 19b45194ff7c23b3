"""A small libcni: run the node's CNI network configuration list for a pod sandbox.

Role (cni.md §2.2–2.3, the runtime's side of the CNI 1.1 spec):
- load the first ``*.conflist`` (or single-plugin ``*.conf``, converted to a list) in ``conf_dir``,
  in lexical order, as libcni does; pick the highest ``cniVersions`` entry we speak;
- ADD runs the plugins in order, each getting the previous result as ``prevResult``; the final
  result is cached at ``<cache_dir>/<network>-<containerID>-<ifname>`` (libcni's file layout);
- CHECK runs in order with the cached result; DEL runs in **reverse** order with the cached result,
  and also when ADD failed or nothing was cached (plugins must accept it); the cache goes after DEL;
- stop at the first error; every error is a ``CniError(code, msg, details)`` from the plugin's JSON.

Plugins are executed from ``bin_dirs`` with ``CNI_*`` env, the config on stdin, optionally behind an
``exec_prefix`` (e.g. ``nsenter --net=/var/run/netns/kl-node1``) so the host side of the pod network
is made inside a node namespace. noded never switches namespaces itself.
Concurrency: no two operations for one container run at once (podsync serialises per pod);
different containers may run in parallel — plugins lock their own shared state (IPAM).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from noded.host.exec import CommandRunner, SubprocessRunner

log = logging.getLogger(__name__)

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")


class CniError(Exception):
    def __init__(self, code: int, msg: str, details: str = "", plugin: str = "") -> None:
        self.code, self.msg, self.details, self.plugin = code, msg, details, plugin
        text = f"plugin type={plugin!r} failed (code {code}): {msg}"
        super().__init__(text + (f": {details}" if details else ""))


class NetworkNotReady(CniError):
    def __init__(self, msg: str) -> None:
        super().__init__(0, msg, plugin="")


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split("."))


def load_conflist(conf_dir: str | Path) -> dict[str, Any]:
    """The network config list noded uses (libcni's ``LoadConfList`` order); raise if none."""
    d = Path(conf_dir)
    files = sorted(p for p in d.glob("*") if p.suffix in (".conflist", ".conf", ".json")) if d.is_dir() else []
    if not files:
        raise NetworkNotReady(f"no CNI network config found in {d}")
    path = files[0]
    try:
        conf = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise NetworkNotReady(f"invalid CNI config {path}: {exc}") from exc
    if "plugins" not in conf:  # a single-plugin .conf: make it a list
        conf = {"cniVersion": conf.get("cniVersion", "0.3.1"), "name": conf.get("name", ""), "plugins": [conf]}
    if not conf.get("name") or not conf.get("plugins"):
        raise NetworkNotReady(f"CNI config {path} needs a name and plugins")
    versions = [v for v in conf.get("cniVersions") or [] if v in SUPPORTED_VERSIONS]
    if versions:
        conf["cniVersion"] = max(versions, key=_version_key)
    conf["_path"] = str(path)
    return dict(conf)


@dataclass
class PodNetwork:
    ips: list[str]
    result: dict[str, Any]
    interface: str = "eth0"

    @property
    def ip(self) -> str:
        return self.ips[0] if self.ips else ""


@dataclass
class CniRuntimeConf:
    container_id: str
    netns: str
    ifname: str = "eth0"
    args: Mapping[str, str] = field(default_factory=dict)  # CNI_ARGS


class Cni(Protocol):
    def add(self, rt: CniRuntimeConf) -> PodNetwork: ...
    def check(self, rt: CniRuntimeConf) -> None: ...
    def delete(self, rt: CniRuntimeConf) -> None: ...
    def ready(self) -> bool: ...


class FakeCni:
    """Stateful fake: hands out 10.244.0.x, remembers attachments; ``fail_add`` injects errors."""

    def __init__(self) -> None:
        self.attached: dict[str, str] = {}
        self.fail_add: str | None = None
        self.calls: list[tuple[str, str]] = []
        self._next = 2

    def add(self, rt: CniRuntimeConf) -> PodNetwork:
        self.calls.append(("ADD", rt.container_id))
        if rt.container_id in self.attached:
            raise CniError(7, f"{rt.container_id} already attached")
        if self.fail_add:
            raise CniError(999, self.fail_add, plugin="fake")
        ip = f"10.244.0.{self._next}"
        self._next += 1
        self.attached[rt.container_id] = ip
        return PodNetwork(ips=[ip], result={"ips": [{"address": f"{ip}/24"}]})

    def check(self, rt: CniRuntimeConf) -> None:
        if rt.container_id not in self.attached:
            raise CniError(3, "unknown container")

    def delete(self, rt: CniRuntimeConf) -> None:
        self.calls.append(("DEL", rt.container_id))
        self.attached.pop(rt.container_id, None)

    def ready(self) -> bool:
        return True


class CniInvoker:
    def __init__(
        self,
        conf_dir: str | Path,
        bin_dirs: Sequence[str | Path],
        cache_dir: str | Path,
        *,
        runner: CommandRunner | None = None,
        exec_prefix: Sequence[str] = (),
        timeout: float = 60.0,
    ) -> None:
        self.conf_dir = Path(conf_dir)
        self.bin_dirs = [Path(b) for b in bin_dirs]
        self.cache_dir = Path(cache_dir)
        self.runner = runner or SubprocessRunner()
        self.exec_prefix = list(exec_prefix)
        self.timeout = timeout

    def ready(self) -> bool:
        try:
            load_conflist(self.conf_dir)
            return True
        except NetworkNotReady:
            return False

    # ---- plumbing --------------------------------------------------------------------------

    def _find(self, plugin_type: str) -> Path:
        for d in self.bin_dirs:
            p = d / plugin_type
            if p.is_file() and os.access(p, os.X_OK):
                return p
        raise CniError(
            7,
            f"failed to find plugin {plugin_type!r} in path {[str(d) for d in self.bin_dirs]}",
            plugin=plugin_type,
        )

    def _exec(
        self,
        command: str,
        conflist: Mapping[str, Any],
        plugin: Mapping[str, Any],
        rt: CniRuntimeConf,
        prev: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        net_conf: dict[str, Any] = {k: v for k, v in plugin.items() if k != "capabilities"}
        net_conf["cniVersion"] = conflist["cniVersion"]
        net_conf["name"] = conflist["name"]
        if prev is not None:
            net_conf["prevResult"] = prev
        exe = self._find(str(plugin["type"]))
        cni_args = ";".join(["IgnoreUnknown=1", *(f"{k}={v}" for k, v in rt.args.items())])
        # Like libcni: the runtime's environment plus the CNI_* variables.
        env = {
            **os.environ,
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": rt.container_id,
            "CNI_NETNS": rt.netns,
            "CNI_IFNAME": rt.ifname,
            "CNI_ARGS": cni_args,
            "CNI_PATH": ":".join(str(d) for d in self.bin_dirs),
        }
        env.setdefault("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        if command == "DEL" and not rt.netns:
            env.pop("CNI_NETNS")
        res = self.runner.run(
            [*self.exec_prefix, str(exe)],
            input=json.dumps(net_conf).encode(),
            env=env,
            timeout=self.timeout,
            check=False,
        )
        out = res.stdout.strip()
        if res.returncode != 0:
            try:
                err = json.loads(out)
                raise CniError(
                    int(err.get("code", 999)),
                    str(err.get("msg", "")),
                    str(err.get("details", "")),
                    plugin=str(plugin["type"]),
                )
            except (json.JSONDecodeError, AttributeError):
                raise CniError(
                    999,
                    (out or res.stderr).decode(errors="replace").strip() or f"exit status {res.returncode}",
                    plugin=str(plugin["type"]),
                ) from None
        if command == "ADD":
            try:
                return dict(json.loads(out))
            except json.JSONDecodeError as exc:
                raise CniError(6, f"cannot decode ADD result: {out[:200]!r}", plugin=str(plugin["type"])) from exc
        return {}

    def _cache_path(self, network: str, rt: CniRuntimeConf) -> Path:
        return self.cache_dir / f"{network}-{rt.container_id}-{rt.ifname}"

    def cached(self, rt: CniRuntimeConf) -> dict[str, Any] | None:
        for p in sorted(self.cache_dir.glob(f"*-{rt.container_id}-{rt.ifname}")):
            try:
                return dict(json.loads(p.read_text()))
            except (OSError, json.JSONDecodeError):
                return None
        return None

    # ---- verbs -----------------------------------------------------------------------------

    def add(self, rt: CniRuntimeConf) -> PodNetwork:
        conflist = load_conflist(self.conf_dir)
        prev: dict[str, Any] | None = None
        for plugin in conflist["plugins"]:
            prev = self._exec("ADD", conflist, plugin, rt, prev)
        result = prev or {}
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        cache = self._cache_path(conflist["name"], rt)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(
            json.dumps(
                {
                    "kind": "cniCacheV1",
                    "containerId": rt.container_id,
                    "ifName": rt.ifname,
                    "networkName": conflist["name"],
                    "config": {k: v for k, v in conflist.items() if k != "_path"},
                    "netns": rt.netns,
                    "cniArgs": dict(rt.args),
                    "result": result,
                    "binDirs": [str(d) for d in self.bin_dirs],
                }
            )
        )
        os.replace(tmp, cache)
        ips = [str(ip["address"]).split("/")[0] for ip in result.get("ips", [])]
        log.info("CNI ADD %s: %s", rt.container_id, ips)
        return PodNetwork(ips=ips, result=result, interface=rt.ifname)

    def check(self, rt: CniRuntimeConf) -> None:
        entry = self.cached(rt)
        if entry is None:
            raise CniError(3, f"no cached ADD result for {rt.container_id}")
        conflist = entry["config"]
        if conflist.get("disableCheck"):
            return
        for plugin in conflist["plugins"]:
            self._exec("CHECK", conflist, plugin, rt, entry["result"])

    def delete(self, rt: CniRuntimeConf) -> None:
        """DEL in reverse order with the cached ADD result; tolerant of a missing cache (a failed
        ADD) — then the current config is used and plugins get no prevResult."""
        entry = self.cached(rt)
        if entry is not None:
            conflist, prev = entry["config"], entry.get("result") or None
            # The plugins that made the attachment (``cleanup`` may not be told where they are).
            for d in entry.get("binDirs") or []:
                if Path(d) not in self.bin_dirs:
                    self.bin_dirs.append(Path(d))
        else:
            try:
                conflist, prev = load_conflist(self.conf_dir), None
            except NetworkNotReady:
                return  # nothing was ever set up with a config we could know
        for plugin in reversed(conflist["plugins"]):
            self._exec("DEL", conflist, plugin, rt, prev)
        for p in self.cache_dir.glob(f"*-{rt.container_id}-{rt.ifname}"):
            p.unlink(missing_ok=True)
        log.info("CNI DEL %s", rt.container_id)


def render_conflist(
    pod_cidr: str,
    *,
    cni: str = "kubelab",
    bridge: str = "cni0",
    mtu: int = 1500,
    cluster_cidr: str = "10.244.0.0/16",
    data_dir: str | None = None,
    name: str = "kubelab",
) -> dict[str, Any]:
    """The node's network config list: the one renderer (noded writes it; netplugin must not be imported).

    The cniVersion is 1.0.0 for both: the reference plugins 1.1.1 speak at most 1.0.0, and ours
    accept every version up to 1.1.0.

    ``kubelab``: our ``kubelab-bridge`` + ``kubelab-ipam``; ``reference``: the reference ``bridge`` +
    ``host-local`` + ``portmap``. Same shape for both (the reference bridge's keys): gateway on the
    bridge, masquerade for traffic leaving the cluster CIDR, hairpin for pod → own Service VIP."""
    if cni not in ("kubelab", "reference"):
        raise ValueError(f"unknown CNI {cni!r} (kubelab or reference)")
    pod_cidr = str(ipaddress.ip_network(pod_cidr, strict=False))  # ValueError names the bad CIDR
    cluster_cidr = str(ipaddress.ip_network(cluster_cidr, strict=False))
    if not 1 <= len(bridge) <= 15:  # IFNAMSIZ - 1
        raise ValueError(f"bridge name {bridge!r} must be 1-15 characters")
    bridge_type, ipam_type = ("kubelab-bridge", "kubelab-ipam") if cni == "kubelab" else ("bridge", "host-local")
    # No ipam "routes": isDefaultGateway already makes the default route (the reference bridge
    # fails with "file exists" when both ask for it).
    ipam: dict[str, Any] = {"type": ipam_type, "ranges": [[{"subnet": pod_cidr}]]}
    if data_dir:
        ipam["dataDir"] = data_dir
    plugins: list[dict[str, Any]] = [
        {
            "type": bridge_type,
            "bridge": bridge,
            "isGateway": True,
            "isDefaultGateway": True,
            # Masquerade only what leaves the cluster. Ours takes ipMasqExclude (the cluster CIDR);
            # the reference bridge can exempt only its own /24, so there it would NAT pod-to-pod
            # traffic between nodes: off (nothing in the lab leaves the cluster anyway).
            "ipMasq": cni == "kubelab",
            "hairpinMode": True,
            "mtu": mtu,
            "ipam": ipam,
        }
    ]
    if cni == "kubelab":
        plugins[0]["ipMasqExclude"] = [cluster_cidr]
    return {"cniVersion": "1.0.0", "name": name, "plugins": plugins}
