"""The dashboard's place in the lab: its files, its supervised component, its URL (kept light).

Role: what ``kubelab up``/``status`` need from the dashboard without importing FastAPI:
``prepare`` issues its credentials from the cluster CA (``controlplane.pki``): a serving
certificate for ``192.168.56.1`` (the host side of ``kl0``, the only address it listens on), a
client identity ``system:kubelab-dashboard`` for reading the API (not the admin's), and a random
bearer token (``/var/lib/kubelab/dashboard/token``, mode 0600, root only); ``component`` is its
entry in the lab plan; ``url`` is the address with the token, printed by ``up`` and ``status``.

Invariants: the token and keys never leave the state dir except in the printed URL; ``kubelab
down`` removes them with the rest of /var/lib/kubelab.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Any

from lab import state, topology

PORT = 8443
USER = "system:kubelab-dashboard"
DIR = state.STATE_DIR / "dashboard"
TOKEN_FILE = DIR / "token"
KUBECONFIG = DIR / "dashboard.kubeconfig"
CERT = DIR / "serving.crt"
KEY = DIR / "serving.key"


def prepare(ca: Any, apiserver_url: str) -> None:
    """Credentials from the cluster CA (``ca``: ``controlplane.pki.CertificateAuthority``) and a token."""
    from controlplane import pki

    DIR.mkdir(parents=True, exist_ok=True)
    os.chmod(DIR, 0o700)
    pki.issue_client(ca, KUBECONFIG, apiserver_url, USER)
    cert, key = pki.issue_cert(ca, "kubelab-dashboard", ips=[topology.HOST_IP], dns=["localhost"],
                               client=False, server=True)  # fmt: skip
    CERT.write_bytes(cert)
    fd = os.open(KEY, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key)
    if not TOKEN_FILE.exists():
        fd = os.open(TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))


def component() -> dict[str, Any]:
    """The dashboard as a supervised process on the host side (root namespace, like the registry)."""
    return {
        "name": "dashboard",
        "node": "host",
        "netns": False,
        "argv": [
            *(sys.executable, "-m", "lab.dashboard", "--kubeconfig", str(KUBECONFIG)),  # kubelab dashboard, slim
            *("--token-file", str(TOKEN_FILE), "--tls-cert-file", str(CERT), "--tls-private-key-file", str(KEY)),
            *("--listen", f"{topology.HOST_IP}:{PORT}"),
        ],
        "log": str(state.LOG_DIR / "host" / "dashboard.log"),
    }


def url(token_file: Path = TOKEN_FILE) -> str:
    try:
        token = token_file.read_text().strip()
    except OSError:
        return "(not set up: no token)"
    return f"https://{topology.HOST_IP}:{PORT}/?token={token}"


def summary(plan: dict[str, Any]) -> str:
    """The line ``kubelab up`` and ``kubelab status`` print ("" when the lab runs without it)."""
    if not any(c.get("name") == "dashboard" for c in plan.get("components", [])):
        return ""
    return f"  dashboard:   {url()}   (read-only; the token is in {TOKEN_FILE})"
