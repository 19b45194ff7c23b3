"""Which cluster ``kubelab trace`` reads, and how ``--probe`` reaches the source of a connection.

The facts a trace explains are read over the node network from the node components' debug
endpoints (``lab.trace.Lab``: the network agent's ``/debug/network``, the proxy's
``/debug/rules``), with the credentials of a kubeconfig. ``open_lab`` picks it: ``--kubeconfig``,
else the one-machine lab's admin kubeconfig when that lab is up, else the Vagrant lab's
(``vagrant/admin.kubeconfig`` when a VM of it exists), else ``$KUBECONFIG``.

``--probe`` is the one part that acts: it makes one connection *from the source* (inside the pod's
network namespace) and reads the source node's conntrack table, so it has to run where the source
is (``probe_exec``):
- a namespace on this host (the one-machine lab): ``nsenter --net=/var/run/netns/<netns>``;
- a VM of the Vagrant lab: the same command over SSH to the node's lab address (192.168.56.0/24,
  never the management network) with the per-machine key Vagrant generated
  (``vagrant/.vagrant/machines/NODE/PROVIDER/private_key``, user ``vagrant``, passwordless sudo).
Elsewhere ``--probe`` is refused with the reason; the trace itself needs neither.

Network safety: SSH only to the lab's node addresses (192.168.56.0/24), nothing else is contacted.
Concurrency: none, one command at a time.
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from lab import trace

ROOT = Path(__file__).resolve().parent.parent
VAGRANT_DIR = ROOT / "vagrant"
KUBECONFIG = VAGRANT_DIR / "admin.kubeconfig"
SSH_USER = "vagrant"
SSH_OPTIONS = (
    "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
)  # fmt: skip


def machine_key(node: str, machines: Path = VAGRANT_DIR / ".vagrant" / "machines") -> Path | None:
    """The private key Vagrant made for ``node`` (any provider), or None when it has no VM."""
    for key in sorted((machines / node).glob("*/private_key")):
        if (key.parent / "id").exists():
            return key
    return None


def vagrant_lab_present(machines: Path = VAGRANT_DIR / ".vagrant" / "machines") -> bool:
    return KUBECONFIG.exists() and any(machine_key(p.name, machines) for p in machines.glob("kl-*"))


def ssh_argv(key: Path, ip: str, argv: Sequence[str]) -> list[str]:
    """``argv`` as root on the node at ``ip``, a lab node address (anything else is refused)."""
    if ipaddress.IPv4Address(ip) not in trace.NODE_NETWORK:
        raise trace.TraceError(f"{ip} is not on the node network {trace.NODE_NETWORK}: not contacting it")
    remote = " ".join(shlex.quote(a) for a in argv)
    return ["ssh", "-i", str(key), *SSH_OPTIONS, f"{SSH_USER}@{ip}", f"sudo -n {remote}"]


def on_node(netns: str, argv: Sequence[str]) -> list[str]:
    """The command to run on a VM node: in the node's own namespace, or nsentered into a pod's."""
    argv = ["python3" if a == sys.executable else a for a in argv]  # the probe: the node's python
    return ["nsenter", f"--net=/var/run/netns/{netns}", "--", *argv] if netns else list(argv)


def kubeconfig_path(explicit: str | None = None) -> str:
    """The kubeconfig ``kubelab trace`` reads with (see the module docstring)."""
    from lab import state

    if explicit:
        return explicit
    if state.read_plan() is not None:
        return str(state.ADMIN_KUBECONFIG)
    if vagrant_lab_present():
        return str(KUBECONFIG)
    if os.environ.get("KUBECONFIG"):
        return os.environ["KUBECONFIG"].split(os.pathsep)[0]
    raise trace.TraceError("no lab is up: start one with `sudo kubelab up` (or give --kubeconfig)")


class VagrantLab(trace.Lab):
    """The Vagrant lab's cluster (``vagrant/admin.kubeconfig``): what ``kubelab status`` reads there."""

    def __init__(self) -> None:
        super().__init__(str(KUBECONFIG))


def open_lab(kubeconfig: str | None = None) -> trace.Lab:
    return trace.Lab(kubeconfig_path(kubeconfig))


def probe_exec(lab: trace.Lab, netns: str, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` (the probe, or ``conntrack``) in ``netns``: a node's or a pod's; "" = this host."""
    if not netns or os.path.exists(f"/var/run/netns/{netns}"):
        if netns and os.geteuid() != 0:
            raise trace.TraceError("--probe enters the source's network namespace: run it with sudo")
        full = ["nsenter", f"--net=/var/run/netns/{netns}", "--", *argv] if netns else argv
        return subprocess.run(full, capture_output=True, text=True, timeout=timeout, check=False)
    node = netns if netns in lab.node_ips.values() else _node_of_pod_netns(lab, netns)
    key = machine_key(node) if node else None
    if key is None:
        raise trace.TraceError(
            f"--probe: the namespace {netns} is neither on this host nor on a VM of the Vagrant lab here; "
            "trace without --probe reads everything else over the node network"
        )
    remote = on_node("" if netns == node else netns, argv)
    return subprocess.run(
        ssh_argv(key, lab.node_ip(node), remote), capture_output=True, text=True, timeout=timeout + 20, check=False
    )


def _node_of_pod_netns(lab: trace.Lab, netns: str) -> str:
    for node in sorted(lab.node_ips.values()):
        try:
            if lab.has_netns(netns, node):
                return node
        except trace.TraceError:  # a node without a network agent (a control plane) holds no pod
            continue
    return ""
