"""The network config list (``.conflist``) noded writes for its node (README: "CNI config").

``render_conflist(pod_cidr, cni="kubelab")`` gives our plugins (CNI 1.1.0);
``cni="reference"`` gives the reference ``bridge`` + ``host-local`` of containernetworking-plugins
1.1.1, which speak at most CNI 1.0.0 — so that list says ``"cniVersion": "1.0.0"``.

Both share the shape of Kubernetes The Hard Way's bridge config: the node's pod CIDR on bridge
``cni0`` whose address (the CIDR's first address) is every pod's default gateway, hairpin on (a
pod reaching itself through its own Service VIP). Masquerade is off by default: pod-to-pod
traffic between nodes must keep its source address (the node agent routes it, host-gw), the lab
has no outside to reach, and Service traffic is masqueraded by the proxy's own rules where
needed. ``ip_masq=True`` turns on SNAT for traffic leaving ``cluster_cidr`` (our plugin only;
the reference bridge would also NAT pod-to-pod traffic between nodes, so it is never set there).

Each node should get its own ``data_dir`` when several nodes share a file system (the one-machine
lab): the IPAM state of a network is ``<data_dir>/<name>/``, and GC of one node must not see
another node's reservations.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Literal

DEFAULT_DATA_DIR = "/var/lib/cni/networks"
NETWORK_NAME = "kubelab"


def render_conflist(
    pod_cidr: str,
    *,
    cni: Literal["kubelab", "reference"] = "kubelab",
    bridge: str = "cni0",
    mtu: int = 1500,
    cluster_cidr: str = "10.244.0.0/16",
    data_dir: str = DEFAULT_DATA_DIR,
    name: str = NETWORK_NAME,
    ip_masq: bool = False,
    log_file: str | None = None,
) -> dict[str, Any]:
    """The conflist (a dict, ready for ``json.dump``) for a node owning ``pod_cidr``."""
    net = ipaddress.ip_network(pod_cidr, strict=False)  # ValueError names the bad CIDR
    ipaddress.ip_network(cluster_cidr, strict=False)
    if cni not in ("kubelab", "reference"):
        raise ValueError(f"cni must be 'kubelab' or 'reference', not {cni!r}")
    if not 1 <= len(bridge) <= 15:
        raise ValueError(f"bridge name {bridge!r} must be 1-15 characters")
    ipam: dict[str, Any] = {
        "type": "kubelab-ipam" if cni == "kubelab" else "host-local",
        "ranges": [[{"subnet": str(net)}]],
        "dataDir": data_dir,
    }
    plugin: dict[str, Any] = {
        "type": "kubelab-bridge" if cni == "kubelab" else "bridge",
        "bridge": bridge,
        "isGateway": True,
        "isDefaultGateway": True,
        "hairpinMode": True,
        "mtu": mtu,
        "ipMasq": bool(ip_masq and cni == "kubelab"),
        "ipam": ipam,
    }
    if cni == "kubelab":
        if ip_masq:
            plugin["ipMasqExclude"] = [str(ipaddress.ip_network(cluster_cidr, strict=False))]
        if log_file:
            plugin["logFile"] = log_file
    return {
        "cniVersion": "1.1.0" if cni == "kubelab" else "1.0.0",
        "name": name,
        "plugins": [plugin],
    }
