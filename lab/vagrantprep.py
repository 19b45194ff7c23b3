"""Host-side preparation for the Vagrant lab (``make vagrant-up``): what the guests cannot fetch.

The guests sit on isolated networks with no route out, so everything they need comes from the host:
- ``vagrant/.prep/wheels``: kubelab and its Python dependencies as wheels (``pip wheel`` on the host);
- ``vagrant/.prep/kl-cp/pki``: the cluster PKI (CA, API server serving cert, admin and
  apiserver-kubelet-client certs) made here with ``controlplane.pki``, so the host's
  ``vagrant/admin.kubeconfig`` works the moment the control plane is up;
- ``vagrant/.prep/kl-nodeN``: each worker's kubeconfig (``system:node:kl-nodeN``), kubelet serving
  cert and the CA;
- the image registry at 192.168.56.1:5000 on the private network's bridge, with the lab's images
  (the same three names as the one-machine lab).

Idempotent: existing PKI is kept, wheels are rebuilt only when ``pyproject.toml`` changed.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

from lab import topology

ROOT = Path(__file__).resolve().parent.parent
VAGRANT_DIR = ROOT / "vagrant"
PREP = VAGRANT_DIR / ".prep"
APISERVER_URL = f"https://{topology.CONTROL_PLANE_IP}:6443"


def build_wheels() -> None:
    wheels = PREP / "wheels"
    stamp = wheels / ".stamp"
    want = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == want:
        return
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--wheel-dir", str(wheels), str(ROOT)], check=True)
    stamp.write_text(want)


def prepare_pki(workers: int) -> None:
    from controlplane import pki

    lab = topology.plan_lab(workers)
    cp_dir = PREP / "kl-cp"
    cluster = pki.ensure_cluster_pki(
        cp_dir,
        server_ips=[topology.CONTROL_PLANE_IP, "127.0.0.1", "10.96.0.1"],
        server_names=[*pki.DEFAULT_SERVER_NAMES, "kl-cp"],
        server_url=APISERVER_URL,
    )
    ca = cluster.ca
    pki.write_kubeconfig(
        VAGRANT_DIR / "admin.kubeconfig",
        APISERVER_URL,
        ca.cert_pem,
        cluster.admin_cert.read_bytes(),
        cluster.admin_key.read_bytes(),
    )
    for node in lab.workers:
        nd = PREP / node.name
        nd.mkdir(parents=True, exist_ok=True)
        cert, key = pki.issue_cert(ca, f"system:node:{node.name}", ["system:nodes"], client=True)
        pki.write_kubeconfig(nd / "kubeconfig", APISERVER_URL, ca.cert_pem, cert, key)
        scert, skey = pki.issue_cert(ca, node.name, [], ips=[node.ip], dns=[node.name], client=False, server=True)
        (nd / "kubelet.crt").write_bytes(scert)
        (nd / "kubelet.key").write_bytes(skey)
        os.chmod(nd / "kubelet.key", 0o600)
        (nd / "ca.crt").write_bytes(ca.cert_pem)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.vagrantprep")
    parser.add_argument("--workers", type=int, default=int(os.environ.get("KUBELAB_WORKERS", "2")))
    parser.add_argument("--skip-wheels", action="store_true", help="for `vagrant validate` only")
    args = parser.parse_args(argv)
    PREP.mkdir(parents=True, exist_ok=True)
    prepare_pki(args.workers)
    if not args.skip_wheels:
        build_wheels()
    print(f"vagrant/.prep ready for {args.workers} workers; host kubeconfig: {VAGRANT_DIR / 'admin.kubeconfig'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
