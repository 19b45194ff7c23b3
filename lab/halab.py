"""The one-machine lab's highly available control plane (``kubelab up --control-planes 3``).

Role: what ``lab/labcmd.py`` adds when the lab has three control planes (issue 17), in the order
``up`` needs it:

- ``prepare_pki``: the cluster PKI's serving certificate covers the API endpoint (192.168.56.10,
  HAProxy in kl-lb) and every control plane's address; the etcd CA and member certificates
  (``controlplane.pki.ensure_etcd_pki``); and each control plane's own data directory
  (``/var/lib/kubelab/controlplanes/kl-cpN``) seeded with the files kubeadm shares between control
  planes (``kubeadm join --control-plane --upload-certs``: the cluster CA, the service-account key
  pair, the front-proxy CA) — each API server then issues its own serving and client certificates
  from them, and its scheduler and controller-manager kubeconfigs name its own API server, as
  kubeadm's ``scheduler.conf``/``controller-manager.conf`` do on every control plane.
- ``components``: the supervised processes of the control plane: an etcd member on each control
  plane (``--etcd stacked``) or on ``kl-etcdN`` (``--etcd external``), ``kubelab controlplane`` on
  each ``kl-cpN`` against every member over TLS (its scheduler and controller-manager elected on
  the ``kube-scheduler``/``kube-controller-manager`` Leases: one of each acts at a time), the
  cluster DNS on each control plane, the metrics server beside the first, and HAProxy in kl-lb.

The command lines themselves are ``lab/hatopology.py``'s, shared with the Vagrant lab.

Concurrency: called from ``kubelab up`` only, under the lab lock.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from controlplane import pki
from lab import hatopology, state, topology

#: What kubeadm copies to a joining control plane (its ``--upload-certs`` secret).
SHARED_PKI_FILES = ("ca.crt", "ca.key", "sa.key", "sa.pub", "front-proxy-ca.crt", "front-proxy-ca.key")


def control_plane_dir(name: str) -> Path:
    return state.STATE_DIR / "controlplanes" / name


def etcd_data_dir(member: str) -> Path:
    return state.STATE_DIR / "etcd" / member


def haproxy_config_path() -> Path:
    return state.STATE_DIR / "haproxy" / "haproxy.cfg"


def server_ips(lab: topology.LabNet) -> list[str]:
    """The serving certificate's addresses: the endpoint, every control plane, loopback, the VIP."""
    return [topology.CONTROL_PLANE_IP, *(n.ip for n in lab.control_planes), "127.0.0.1", "10.96.0.1"]


def server_names(lab: topology.LabNet) -> list[str]:
    return [*pki.DEFAULT_SERVER_NAMES, topology.LB_NAME, *(n.name for n in lab.control_planes)]


def prepare_pki(lab: topology.LabNet) -> pki.EtcdPki:
    """The etcd PKI and each control plane's seeded data directory (the cluster PKI exists already)."""
    etcd = pki.ensure_etcd_pki(state.STATE_DIR, lab.etcd_members())
    src = state.STATE_DIR / "pki"
    for cp in lab.control_planes:
        dst = control_plane_dir(cp.name) / "pki"
        dst.mkdir(parents=True, exist_ok=True)
        for name in SHARED_PKI_FILES:
            shutil.copy2(src / name, dst / name)
    path = haproxy_config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        hatopology.haproxy_config(
            topology.CONTROL_PLANE_IP, [(n.name, n.ip) for n in lab.control_planes], src / "ca.crt"
        )
    )
    return etcd


def etcd_plan(lab: topology.LabNet) -> dict[str, Any]:
    """The plan's ``etcd`` entry: where ``kubelab etcd``, backup and status find the members."""
    e = pki.EtcdPki(state.STATE_DIR / "pki" / "etcd")
    members = lab.etcd_members()
    return {
        "endpoints": hatopology.etcd_endpoints(members),
        "members": [{"name": n, "ip": ip, "data_dir": str(etcd_data_dir(n))} for n, ip in members],
        "netns": "",  # from the host, over kl0: any member may be stopped
        "tls": {"ca": str(e.ca_cert), "cert": str(e.healthcheck_cert), "key": str(e.healthcheck_key)},
        "token": hatopology.CLUSTER_TOKEN,
    }


def components(lab: topology.LabNet, cp_args: list[str], python_cmd: Any, apiserver_url: str) -> list[dict[str, Any]]:
    """The HA control plane's supervised processes (``cp_args``: the flags every control plane shares)."""
    logs = state.LOG_DIR
    e = pki.EtcdPki(state.STATE_DIR / "pki" / "etcd")
    members = lab.etcd_members()
    comps: list[dict[str, Any]] = []
    for name, ip in members:
        comps.append(
            {
                "name": "etcd",
                "node": name,
                "argv": hatopology.etcd_member_argv(name, ip, members, e, etcd_data_dir(name)),
                "log": str(logs / name / "etcd.log"),
            }
        )
    cps = lab.control_planes
    for cp in cps:
        endpoints = ",".join(hatopology.apiserver_etcd_endpoints(members, cp.name))
        argv = python_cmd(
            "controlplane",
            "--data-dir", str(control_plane_dir(cp.name)),
            "--listen", "0.0.0.0:6443",
            "--advertise-address", cp.ip,
            "--hostname-override", cp.name,  # Lease holders read kl-cpN_…, not this machine's name
            "--tls-san", topology.CONTROL_PLANE_IP,
            "--tls-san", topology.LB_NAME,
            "--store", "etcd",
            "--etcd-endpoints", endpoints,
            "--etcd-cafile", str(e.ca_cert),
            "--etcd-certfile", str(e.apiserver_client_cert),
            "--etcd-keyfile", str(e.apiserver_client_key),
            *cp_args,
        )  # fmt: skip
        comps.append({"name": "controlplane", "node": cp.name, "argv": argv,
                      "log": str(logs / cp.name / "controlplane.log")})  # fmt: skip
    for cp in cps:
        # Every control plane answers DNS; each publishes the same list (all control planes) in
        # kube-dns's endpoints, so the three writers agree instead of taking turns.
        dns = ["dns", "--kubeconfig", str(state.DNS_KUBECONFIG), "--listen", f"{cp.ip}:53"]
        for other in cps:
            dns += ["--advertise-address", other.ip]
        comps.append({"name": "dns", "node": cp.name, "argv": python_cmd(*dns),
                      "log": str(logs / cp.name / "dns.log")})  # fmt: skip
    first = cps[0]
    ms_args = [sys.executable, "-m", "controlplane.metricsserver", "--data-dir", str(state.STATE_DIR)]
    ms_args += ["--apiserver-url", apiserver_url, "--bind-address", first.ip, "--register-apiservice", first.ip]
    comps.append({"name": "metrics-server", "node": first.name, "argv": ms_args,
                  "log": str(logs / first.name / "metrics-server.log")})  # fmt: skip
    lb = lab.lb
    assert lb is not None
    comps.append(
        {
            "name": "haproxy",
            "node": lb.name,
            # -db: stay in the foreground (the supervisor owns the process); -W is not needed.
            "argv": ["haproxy", "-db", "-f", str(haproxy_config_path())],
            "log": str(logs / lb.name / "haproxy.log"),
        }
    )
    return comps
