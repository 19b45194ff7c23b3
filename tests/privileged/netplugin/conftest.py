"""Fixtures for the CNI plugins on a real kernel.

``cni`` gives a throwaway "host" namespace (where the plugins run, via ``ip netns exec``, so the
bridge, veth host ends, sysctls and iptables rules all live there and vanish with it), a CNI bin
dir with our launchers plus the reference plugins on CNI_PATH, an IPAM dataDir under
``tmp_path``, and helpers to make pod namespaces and run plugins or conflists.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netplugin.install import install_plugins
from tests.helpers.cniruntime import Network, exec_plugin
from tests.helpers.netns import NetnsFactory, sh

REFERENCE_BIN = "/usr/lib/cni"


class CniEnv:
    def __init__(self, netns: NetnsFactory, tmp: Path) -> None:
        self.make_ns = netns
        self.host = netns("host")
        self.bin = tmp / "bin"
        install_plugins(self.bin)
        self.cni_path = [str(self.bin), REFERENCE_BIN]
        self.data = tmp / "ipam"
        self.tmp = tmp
        self.wrapper = ["ip", "netns", "exec", self.host]

    def pod(self, label: str = "pod") -> str:
        """A new pod namespace; returns its path (CNI_NETNS)."""
        return f"/var/run/netns/{self.make_ns(label)}"

    def conf(self, **kw: Any) -> dict[str, Any]:
        """Our bridge + our IPAM on 10.244.1.0/24 (override any key)."""
        c: dict[str, Any] = {
            "cniVersion": "1.1.0",
            "name": "kl",
            "type": "kubelab-bridge",
            "bridge": "cni0",
            "isGateway": True,
            "isDefaultGateway": True,
            "hairpinMode": True,
            "ipam": {"type": "kubelab-ipam", "dataDir": str(self.data), "ranges": [[{"subnet": "10.244.1.0/24"}]]},
        }
        c.update(kw)
        return c

    def run(
        self,
        command: str,
        conf: dict[str, Any] | bytes,
        cid: str = "ctr1",
        netns: str = "",
        ifname: str = "eth0",
        plugin: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        if plugin is None:
            assert isinstance(conf, dict)
            plugin = str(conf["type"])
        return exec_plugin(
            plugin,
            command,
            conf,
            cni_path=self.cni_path,
            container_id=cid,
            netns=netns,
            ifname=ifname,
            wrapper=self.wrapper,
            extra_env=extra_env,
        )

    def network(self, conflist: dict[str, Any]) -> Network:
        return Network(conflist, self.cni_path, wrapper=self.wrapper)

    def sh(self, *argv: str, netns: str | None = None, check: bool = True) -> str:
        """Run a command in the host namespace (default) or a pod namespace path."""
        ns = self.host if netns is None else Path(netns).name
        return sh(*argv, netns=ns, check=check)

    def links(self) -> list[str]:
        out = json.loads(self.sh("ip", "-j", "link", "show"))
        return sorted(link["ifname"] for link in out)

    def reserved(self, network: str = "kl") -> list[str]:
        d = self.data / network
        return sorted(p.name for p in d.iterdir() if p.name[0].isdigit()) if d.exists() else []

    def nat_rules(self) -> list[str]:
        return [line for line in self.sh("iptables-save", "-t", "nat").splitlines() if line.startswith("-A")]


@pytest.fixture
def cni(netns: NetnsFactory, tmp_path: Path) -> Iterator[CniEnv]:
    yield CniEnv(netns, tmp_path)
