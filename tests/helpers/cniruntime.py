"""A test-side CNI runtime (the part of libcni the plugin tests need): run a network config list.

Role: kubelab's one CNI runtime library is noded's (``noded/network/cni.py``, ``CniInvoker``); this
is the tests' independent driver of the plugins, so the plugin tests do not depend on noded and
can exercise what noded never sends (GC, STATUS, ``capabilities`` for chains with the reference
``portmap``/``tuning``, exec errors). It drives a ``.conflist`` exactly as the spec's runtime
section and libcni do:
- each plugin's stdin = the plugin object + ``name`` + ``cniVersion`` (+ ``prevResult``,
  + ``runtimeConfig`` for declared ``capabilities``; ``capabilities`` itself is removed);
- ADD runs the plugins in order, each getting the previous result as ``prevResult``; DEL runs
  them in reverse with the final ADD result; CHECK in order with it; the first error stops the
  operation (DEL too, like libcni);
- GC and STATUS run on every plugin (GC with ``cni.dev/valid-attachments`` and the older
  ``cni.dev/attachments``, as libcni sends both); GC collects all errors;
- the executable is looked up on ``cni_path`` by the plugin's ``type``.

Not on the plugins' exec path, so it may use :mod:`subprocess` and :mod:`json`.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any


class PluginError(Exception):
    """A plugin answered with the spec's error JSON (or crashed): ``code``, ``msg``, ``details``."""

    def __init__(self, plugin: str, code: int, msg: str, details: str = "", stderr: str = "") -> None:
        super().__init__(f"{plugin}: [{code}] {msg}" + (f" ({details})" if details else ""))
        self.plugin = plugin
        self.code = code
        self.msg = msg
        self.details = details
        self.stderr = stderr


def find_plugin(name: str, cni_path: Sequence[str]) -> str:
    for d in cni_path:
        p = os.path.join(d, name)
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    raise PluginError(name, 7, f"failed to find plugin {name!r} in path {list(cni_path)}")


def exec_plugin(
    plugin: str,
    command: str,
    conf: Mapping[str, Any] | bytes,
    *,
    cni_path: Sequence[str],
    container_id: str = "",
    netns: str = "",
    ifname: str = "",
    cni_args: str = "",
    extra_env: Mapping[str, str] | None = None,
    wrapper: Sequence[str] = (),
    timeout: float = 60,
) -> dict[str, Any] | None:
    """Exec one plugin (found on ``cni_path``); return its parsed stdout (None when empty).

    ``wrapper`` prefixes the argv (e.g. ``["ip", "netns", "exec", "host-ns"]`` so the plugin runs
    inside a test's "host" namespace).
    """
    exe = find_plugin(plugin, cni_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CNI_")}
    env.update(
        {
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_ARGS": cni_args,
            "CNI_PATH": ":".join(cni_path),
        }
    )
    env = {k: v for k, v in env.items() if v != "" or not k.startswith("CNI_")}
    if extra_env:
        env.update(extra_env)
    data = conf if isinstance(conf, bytes) else json.dumps(conf).encode()
    res = subprocess.run([*wrapper, exe], input=data, env=env, capture_output=True, timeout=timeout, check=False)
    out = res.stdout.decode().strip()
    if res.returncode != 0:
        try:
            err = json.loads(out)
        except ValueError:
            err = {}
        raise PluginError(
            plugin,
            int(err.get("code", -1)),
            str(err.get("msg", out or f"exit {res.returncode}")),
            str(err.get("details", "")),
            res.stderr.decode(errors="replace"),
        )
    return json.loads(out) if out else None


def plugin_conf(
    conflist: Mapping[str, Any],
    plugin: Mapping[str, Any],
    prev: Mapping[str, Any] | None,
    runtime_config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The stdin of one plugin of a list (spec §"Deriving execution configuration")."""
    conf = {k: v for k, v in plugin.items() if k != "capabilities"}
    conf["name"] = conflist["name"]
    conf["cniVersion"] = conflist["cniVersion"]
    caps = plugin.get("capabilities") or {}
    if runtime_config:
        rc = {k: v for k, v in runtime_config.items() if caps.get(k)}
        if rc:
            conf["runtimeConfig"] = rc
    if prev is not None:
        conf["prevResult"] = dict(prev)
    return conf


class Network:
    """One conflist bound to a CNI_PATH (and optionally a wrapper such as ``ip netns exec``)."""

    def __init__(
        self,
        conflist: Mapping[str, Any],
        cni_path: Sequence[str],
        wrapper: Sequence[str] = (),
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.conflist = conflist
        self.cni_path = list(cni_path)
        self.wrapper = list(wrapper)
        self.extra_env = dict(extra_env or {})

    @property
    def plugins(self) -> list[dict[str, Any]]:
        return list(self.conflist["plugins"])

    def _exec(
        self, plugin: Mapping[str, Any], command: str, conf: Mapping[str, Any], **kw: Any
    ) -> dict[str, Any] | None:
        return exec_plugin(
            str(plugin["type"]),
            command,
            conf,
            cni_path=self.cni_path,
            wrapper=self.wrapper,
            extra_env=self.extra_env,
            **kw,
        )

    def add(
        self, container_id: str, netns: str, ifname: str = "eth0", runtime_config: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        prev: dict[str, Any] | None = None
        for p in self.plugins:
            conf = plugin_conf(self.conflist, p, prev, runtime_config)
            prev = self._exec(p, "ADD", conf, container_id=container_id, netns=netns, ifname=ifname)
        assert prev is not None
        return prev

    def delete(
        self,
        container_id: str,
        netns: str,
        ifname: str = "eth0",
        result: Mapping[str, Any] | None = None,
        runtime_config: Mapping[str, Any] | None = None,
    ) -> None:
        for p in reversed(self.plugins):
            conf = plugin_conf(self.conflist, p, result, runtime_config)
            self._exec(p, "DEL", conf, container_id=container_id, netns=netns, ifname=ifname)

    def check(
        self,
        container_id: str,
        netns: str,
        ifname: str,
        result: Mapping[str, Any],
        runtime_config: Mapping[str, Any] | None = None,
    ) -> None:
        if self.conflist.get("disableCheck"):
            return
        for p in self.plugins:
            conf = plugin_conf(self.conflist, p, result, runtime_config)
            self._exec(p, "CHECK", conf, container_id=container_id, netns=netns, ifname=ifname)

    def status(self) -> None:
        for p in self.plugins:
            self._exec(p, "STATUS", plugin_conf(self.conflist, p, None))

    def gc(self, valid: Sequence[tuple[str, str]]) -> list[PluginError]:
        atts = [{"containerID": c, "ifname": i} for c, i in valid]
        errors = []
        for p in self.plugins:
            conf = plugin_conf(self.conflist, p, None)
            conf["cni.dev/valid-attachments"] = atts
            conf["cni.dev/attachments"] = atts
            try:
                self._exec(p, "GC", conf)
            except PluginError as exc:
                errors.append(exc)
        return errors
