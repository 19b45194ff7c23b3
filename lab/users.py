"""``kubelab user add NAME [--group G]... | kubelab user list``: people with their own credentials.

Role: Kubernetes has no User objects — a user is whoever presents a certificate the cluster CA
signed, its CN the user name and each O a group. ``user add`` issues such a certificate (kept as
``<data-dir>/pki/users/<name>.crt``) and writes a kubeconfig for it (``<data-dir>/users/<name>.kubeconfig``,
the API server address taken from ``admin.kubeconfig``), then prints the kubeconfig's path, so a
learner can practise RBAC::

    kubectl --kubeconfig $(sudo kubelab user add alice) get pods      # Forbidden until bound
    kubectl create rolebinding alice-view --clusterrole view --user alice

``user list`` reads the issued certificates back (who, which groups, until when).

Invariants: running ``add`` again with the same groups reuses the certificate; with other groups a
new one is issued (the old one stays valid until it expires: certificates cannot be revoked —
which is why real clusters prefer short-lived credentials). Names that cannot be file names
(``/``, a leading ``.``) are refused before anything is written.

Concurrency: none; one command at a time per data directory.
"""

from __future__ import annotations

import argparse
import datetime
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lab import state


class UserError(Exception):
    pass


@dataclass(frozen=True)
class IssuedUser:
    name: str
    groups: tuple[str, ...]
    not_after: datetime.datetime
    kubeconfig: Path


def _check_name(name: str, what: str) -> None:
    if not name or name.strip() != name:
        raise UserError(f"{what} must not be empty or start/end with spaces: {name!r}")
    if "/" in name or "\x00" in name or name.startswith(".") or len(name) > 253:
        raise UserError(f"invalid {what} {name!r}: it may not contain '/', start with '.', or exceed 253 characters")


def _server_of(admin_kubeconfig: Path) -> str:
    try:
        doc: Any = yaml.safe_load(admin_kubeconfig.read_text())
        return str(doc["clusters"][0]["cluster"]["server"])
    except (OSError, KeyError, IndexError, TypeError, yaml.YAMLError) as exc:
        raise UserError(f"cannot read the API server address from {admin_kubeconfig}: is the cluster up?") from exc


def add_user(data_dir: Path, name: str, groups: list[str], server: str | None = None) -> Path:
    """Issue (or reuse) ``name``'s certificate and write its kubeconfig; returns the kubeconfig path."""
    from controlplane import pki

    _check_name(name, "user name")
    for g in groups:
        _check_name(g, "group")
    pki_dir = data_dir / "pki"
    if not (pki_dir / "ca.crt").exists() or not (pki_dir / "ca.key").exists():
        raise UserError(f"no cluster CA under {pki_dir}: bring the cluster up first (sudo kubelab up)")
    ca = pki.CertificateAuthority((pki_dir / "ca.crt").read_bytes(), (pki_dir / "ca.key").read_bytes())
    url = server or _server_of(data_dir / "admin.kubeconfig")
    kubeconfig = data_dir / "users" / f"{name}.kubeconfig"
    return pki.issue_client(ca, kubeconfig, url, name, list(dict.fromkeys(groups)), cert_dir=pki_dir / "users")


def list_users(data_dir: Path) -> list[IssuedUser]:
    """Every user issued by ``add_user``, by name."""
    from cryptography import x509

    from controlplane import pki

    out: list[IssuedUser] = []
    for crt in sorted((data_dir / "pki" / "users").glob("*.crt")):
        try:
            pem = crt.read_bytes()
            cn, groups = pki.cert_subject(pem)
            not_after = x509.load_pem_x509_certificate(pem).not_valid_after_utc
        except (OSError, ValueError):
            continue
        out.append(IssuedUser(cn, groups, not_after, data_dir / "users" / f"{crt.stem}.kubeconfig"))
    return out


def cmd_user(args: argparse.Namespace) -> int:
    data_dir: Path = args.data_dir
    try:
        if args.action == "add":
            if not args.name:
                raise UserError("usage: kubelab user add NAME [--group G]...")
            path = add_user(data_dir, args.name, args.group or [], args.server or None)
            print(path)
            return 0
        users = list_users(data_dir)
        if not users:
            print(f"No users yet (add one with `kubelab user add NAME`); certificates live in {data_dir / 'pki/users'}")
            return 0
        print(f"{'NAME':<20} {'GROUPS':<30} {'EXPIRES':<12} KUBECONFIG")
        for u in users:
            groups = ",".join(u.groups) or "<none>"
            print(f"{u.name:<20} {groups:<30} {u.not_after:%Y-%m-%d}   {u.kubeconfig}")
        return 0
    except PermissionError as exc:
        print(f"kubelab user: {exc.filename}: permission denied (run it with sudo)", file=sys.stderr)
        return 1
    except UserError as exc:
        print(f"kubelab user: {exc}", file=sys.stderr)
        return 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "user",
        help="issue a user's client certificate and kubeconfig (add), or list issued users (list)",
        description="Users are certificates signed by the cluster CA: CN is the user name, each O a group.",
    )
    p.add_argument("action", choices=["add", "list"])
    p.add_argument("name", nargs="?", default="", help="the user name (add)")
    p.add_argument("--group", action="append", default=[], help="a group of the user (repeatable)")
    p.add_argument("--data-dir", type=Path, default=state.STATE_DIR, help="the cluster's data directory")
    p.add_argument("--server", default="", help="API server URL (default: the one in admin.kubeconfig)")
    p.set_defaults(func=cmd_user)
