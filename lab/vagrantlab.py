"""``kubelab status`` and ``kubelab node stop|start`` on the Vagrant lab (VMs instead of namespaces).

When no one-machine lab is up here but ``vagrant up`` made the VM lab (``vagrant/admin.kubeconfig``
and a VM id under ``vagrant/.vagrant/machines``), ``lab.labcmd`` hands these two commands over:

- ``status``: the nodes as the API server sees them (admin kubeconfig), then each VM's systemd
  units (``systemctl is-active``), asked over the node network by SSH with Vagrant's per-machine key
  (``lab.tracefetch``), one SSH session per VM.
- ``node stop NAME``: the failure the one-machine lab practises by cutting a node's link to ``kl0``:
  the VM's NIC on the lab network is set link-down **from the host side** (libvirt
  ``virsh domif-setlink … down``; VirtualBox ``VBoxManage controlvm … setlinkstate2 off``). The VM
  and its components keep running but no longer reach the control plane: it turns NotReady after
  the node monitor grace period and its pods are evicted, as with a real partitioned node. When it
  is kl-node1 (the host's route to the service network goes through it), the route is moved to
  another worker. ``node start NAME`` sets the link up again and puts the route back.

Reads the VM ids Vagrant wrote; changes only the link state of the lab's own VMs and the lab's own
host route. Concurrency: none.
"""

from __future__ import annotations

import subprocess

from lab import topology, trace, tracefetch

MACHINES = tracefetch.VAGRANT_DIR / ".vagrant" / "machines"
SERVICE_NETWORK = "10.96.0.0/12"
ROUTE_METRIC = "101"  # vagrant/lab.sh's
UNITS = {
    "controlplane": ("kubelab-controlplane", "kubelab-dns", "kubelab-metrics-server"),
    "worker": ("kubelab-noded", "kubelab-proxy", "kubelab-netagent"),
}


def present() -> bool:
    return tracefetch.vagrant_lab_present(MACHINES)


def machine(name: str) -> tuple[str, str] | None:
    """(provider, VM id) of the lab machine ``name``, or None when Vagrant has no VM for it."""
    for idf in sorted((MACHINES / name).glob("*/id")):
        vm_id = idf.read_text().strip()
        if vm_id:
            return idf.parent.name, vm_id
    return None


def _plan() -> topology.LabNet:
    """The lab's plan for as many workers as Vagrant has VMs (at least one: the design's minimum)."""
    return topology.plan_lab(max(1, len([p for p in MACHINES.glob("kl-node*") if machine(p.name)])))


def _run(argv: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def lab_network_macs(domiflist: str) -> list[str]:
    """The MACs of a domain's NICs on the libvirt network kubelab-lab, from ``virsh domiflist``."""
    rows = [r.split() for r in domiflist.splitlines()]
    return [r[4] for r in rows if len(r) >= 5 and r[2] == "kubelab-lab"]


def set_link(name: str, up: bool) -> str:
    """Set the VM's lab-network NIC up or down from the host; returns what was done."""
    found = machine(name)
    if found is None:
        raise SystemExit(f"kubelab node: {name} has no VM (cd vagrant && vagrant status)")
    provider, vm_id = found
    state = "up" if up else "down"
    if provider == "libvirt":
        virsh = ["virsh", "-c", "qemu:///system"]
        macs = lab_network_macs(_run([*virsh, "domiflist", vm_id]).stdout)
        if not macs:
            raise SystemExit(f"kubelab node: {name}: no interface on the libvirt network kubelab-lab")
        res = _run([*virsh, "domif-setlink", vm_id, macs[0], state])
        what = f"virsh domif-setlink {vm_id} {macs[0]} {state}"
    elif provider == "virtualbox":
        res = _run(["VBoxManage", "controlvm", vm_id, "setlinkstate2", "on" if up else "off"])
        what = f"VBoxManage controlvm {vm_id} setlinkstate2 {'on' if up else 'off'}"
    else:
        raise SystemExit(f"kubelab node: provider {provider} is not supported")
    if res.returncode != 0:
        raise SystemExit(f"kubelab node: `{what}` failed: {res.stderr.strip()}")
    return what


def route_via(ip: str) -> None:
    _run(["ip", "route", "replace", SERVICE_NETWORK, "via", ip, "metric", ROUTE_METRIC])


def node(action: str, name: str) -> int:
    lab = _plan()
    try:
        target = lab.node(name)
    except topology.TopologyError as exc:
        print(f"kubelab node: {exc}")
        return 1
    if not target.is_worker:
        print("kubelab node: only workers can be stopped and started")
        return 1
    first = lab.workers[0]
    if action == "stop":
        what = set_link(name, up=False)
        other = next((w for w in lab.workers if w.name != name and machine(w.name)), None)
        if target.name == first.name and other is not None:
            route_via(other.ip)  # service VIPs from the host keep working through another worker
        print(f"{name}: its link to the lab network cut from the host ({what}); the VM and its units keep running.")
        print("  The control plane marks it NotReady after the node monitor grace period, then evicts its pods:")
        print("  watch with `kubectl --kubeconfig vagrant/admin.kubeconfig get nodes,pods -o wide -w`.")
    else:
        what = set_link(name, up=True)
        if target.name == first.name:
            route_via(first.ip)
        print(f"{name}: link restored ({what}); it turns Ready at its next heartbeat.")
    return 0


def status() -> int:
    try:
        lab = tracefetch.VagrantLab()
        nodes = lab.get("/api/v1/nodes").get("items", [])
    except (OSError, ValueError, trace.TraceError) as exc:  # status reports what it cannot read
        print(f"Vagrant lab: the API server does not answer ({exc})")
        nodes = []
    print(f"Vagrant lab (VMs, {tracefetch.VAGRANT_DIR}); kubeconfig {tracefetch.KUBECONFIG}")
    print("\nNODE        READY  POD CIDR          ADDRESS")
    for n in nodes:
        conds = n.get("status", {}).get("conditions") or []
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conds)
        addrs = n.get("status", {}).get("addresses", [])
        addr = next((a["address"] for a in addrs if a["type"] == "InternalIP"), "")
        print(f"{n['metadata']['name']:<11} {ready!s:<6} {n['spec'].get('podCIDR', ''):<17} {addr}")
    print("\nNODE        VM                                    UNITS")
    plan = _plan()
    for nd in plan.nodes:
        found = machine(nd.name)
        if found is None:
            print(f"{nd.name:<11} (no VM)")
            continue
        units = UNITS["worker" if nd.is_worker else "controlplane"]
        key = tracefetch.machine_key(nd.name, MACHINES)
        states = ["unknown"] * len(units)
        if key is not None:
            res = _run(tracefetch.ssh_argv(key, nd.ip, ["systemctl", "is-active", *units]), timeout=40)
            got = res.stdout.split()
            if len(got) == len(units):
                states = got
        vm = f"{found[0]} {found[1]}"
        print(f"{nd.name:<11} {vm:<37} " + ", ".join(f"{u}={s}" for u, s in zip(units, states, strict=True)))
    return 0
