"""``kubelab status`` and ``kubelab node stop|start`` on the Vagrant lab (VMs instead of namespaces).

When no one-machine lab is up here but ``vagrant up`` made the VM lab (``vagrant/admin.kubeconfig``
and a VM id under ``vagrant/.vagrant/machines``), ``lab.labcmd`` hands these two commands over:

- ``status``: the nodes as the API server sees them (admin kubeconfig), then each VM's systemd
  units (``systemctl is-active``), asked over the node network by SSH with Vagrant's per-machine key
  (``lab.tracefetch``), one SSH session per VM. With an HA control plane (``KUBELAB_CONTROL_PLANES=3``)
  that is also kl-lb's ``haproxy`` and each member's ``kubelab-etcd`` (``vagrantprep.vm_units``).
- ``node stop NAME``: the failure the one-machine lab practises by cutting a node's link to ``kl0``:
  the VM's NIC on the lab network is set link-down **from the host side** (libvirt
  ``virsh domif-setlink … down``; VirtualBox ``VBoxManage controlvm … setlinkstate2 off``). The VM
  and its components keep running but no longer reach the control plane: it turns NotReady after
  the node monitor grace period and its pods are evicted, as with a real partitioned node. When it
  is kl-node1 (the host's route to the service network goes through it), the route is moved to
  another worker. ``node start NAME`` sets the link up again and puts the route back.
  With HA the same works for ``kl-cpN`` and ``kl-etcdN``: the member and API server on it are cut
  off, etcd elects a leader among the others and HAProxy takes that API server out of rotation.
  The single ``kl-cp`` and ``kl-lb`` (the API endpoint itself) are refused, with the reason.

- ``etcd_plan``/``etcd``: the HA lab's etcd as ``lab.etcdcmd`` sees a lab's: every member's client
  URL, reached from the host straight over the lab network (no namespace to enter), with the
  health-check client certificate ``vagrantprep`` made; ``status`` prints each member's health, the
  leader and the Lease holders from it, and ``etcd(ARGS)`` is ``kubelab etcd`` for the VM lab.

Reads the VM ids Vagrant wrote; changes only the link state of the lab's own VMs and the lab's own
host route. Concurrency: none.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

from lab import etcdcmd, hatopology, topology, trace, tracefetch, vagrantprep

MACHINES = tracefetch.VAGRANT_DIR / ".vagrant" / "machines"
SERVICE_NETWORK = "10.96.0.0/12"
ROUTE_METRIC = "101"  # vagrant/lab.sh's


def present() -> bool:
    return tracefetch.vagrant_lab_present(MACHINES)


def machine(name: str) -> tuple[str, str] | None:
    """(provider, VM id) of the lab machine ``name``, or None when Vagrant has no VM for it."""
    for idf in sorted((MACHINES / name).glob("*/id")):
        vm_id = idf.read_text().strip()
        if vm_id:
            return idf.parent.name, vm_id
    return None


def _count(pattern: str) -> int:
    return sum(1 for p in MACHINES.glob("kl-*") if re.fullmatch(pattern, p.name) and machine(p.name))


def _plan() -> topology.LabNet:
    """The lab's plan for the VMs Vagrant has: as many workers (at least one: the design's minimum),
    and the HA shape when it made ``kl-cpN`` VMs (``kl-etcdN`` ones: external etcd)."""
    workers = max(1, _count(r"kl-node\d+"))
    cps = _count(r"kl-cp\d+")
    if cps == 0:
        return topology.plan_lab(workers)
    etcd = "external" if _count(r"kl-etcd\d+") else "stacked"
    return topology.plan_lab(workers, 5 if cps > 3 else 3, etcd)  # 3 or 5, even after a partial destroy


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
    if target.role == "lb":
        print(f"kubelab node: {name} is the API endpoint itself (HAProxy); stop a control plane (kl-cp1..) instead")
        return 1
    if target.is_control_plane and not lab.ha:
        print("kubelab node: only workers can be stopped and started (the single control plane is the cluster)")
        return 1
    first = lab.workers[0]
    if action == "stop":
        what = set_link(name, up=False)
        other = next((w for w in lab.workers if w.name != name and machine(w.name)), None)
        if target.name == first.name and other is not None:
            route_via(other.ip)  # service VIPs from the host keep working through another worker
        print(f"{name}: its link to the lab network cut from the host ({what}); the VM and its units keep running.")
        if target.is_worker:
            print("  The control plane marks it NotReady after the node monitor grace period, then evicts its pods:")
            print("  watch with `kubectl --kubeconfig vagrant/admin.kubeconfig get nodes,pods -o wide -w`.")
        else:
            print("  Its etcd member and API server are cut off: the other members elect a leader if it led,")
            print("  HAProxy takes its API server out, the kube-scheduler/kube-controller-manager Leases move:")
            print("  watch with `kubectl --kubeconfig vagrant/admin.kubeconfig get lease -n kube-system -w`.")
    else:
        what = set_link(name, up=True)
        if target.name == first.name:
            route_via(first.ip)
        print(f"{name}: link restored ({what}); it turns Ready at its next heartbeat.")
    return 0


def etcd_plan(lab: topology.LabNet) -> dict[str, Any]:
    """The VM lab's etcd in ``lab.etcdcmd``'s terms (the plan file's ``store`` and ``etcd`` entries)."""
    from controlplane.pki import EtcdPki

    e = EtcdPki(vagrantprep.PREP / "cluster" / "pki" / "etcd")
    return {
        "store": "etcd",
        "etcd": {
            "endpoints": hatopology.etcd_endpoints(lab.etcd_members()),
            "netns": "",  # the host is on the lab network: no namespace to enter
            "tls": {"ca": str(e.ca_cert), "cert": str(e.healthcheck_cert), "key": str(e.healthcheck_key)},
        },
    }


def etcd(args: list[str]) -> int:
    """``kubelab etcd ARGS`` on the VM lab: Debian's etcdctl against every member, from the host."""
    plan = _plan()
    if not plan.ha:
        print("kubelab etcd: this Vagrant lab's store is SQLite on kl-cp (KUBELAB_CONTROL_PLANES=3 runs etcd)")
        return 1
    try:
        return subprocess.run(etcdcmd.etcdctl_argv(etcd_plan(plan), args), check=False).returncode
    except FileNotFoundError:
        print("kubelab etcd: etcdctl is not installed (Debian package etcd-client; `make deps` installs it)")
        return 1


def status() -> int:
    api: tracefetch.VagrantLab | None = None
    try:
        api = tracefetch.VagrantLab()
        nodes = api.get("/api/v1/nodes").get("items", [])
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
        units = vagrantprep.vm_units(plan, nd)
        key = tracefetch.machine_key(nd.name, MACHINES)
        states = ["unknown"] * len(units)
        if key is not None:
            res = _run(tracefetch.ssh_argv(key, nd.ip, ["systemctl", "is-active", *units]), timeout=40)
            got = res.stdout.split()
            if len(got) == len(units):
                states = got
        vm = f"{found[0]} {found[1]}"
        print(f"{nd.name:<11} {vm:<37} " + ", ".join(f"{u}={s}" for u, s in zip(units, states, strict=True)))
    if plan.ha:

        def get(path: str) -> dict[str, Any]:
            if api is None:
                raise OSError("the API server does not answer")
            try:
                return api.get(path)
            except (KeyError, trace.TraceError) as exc:  # etcdcmd reports OSError as "(none)"
                raise OSError(str(exc)) from exc

        for line in etcdcmd.status_lines(etcd_plan(plan), get):
            print(line)
    return 0
