"""``kubelab backup save FILE`` / ``kubelab backup restore FILE``: the lab's store, saved and put back.

Role: the lab half of backup and restore (``controlplane.storage.backup`` does the files). It knows
where the lab keeps its store (``/var/lib/kubelab/state.db``, or the etcd member's data dir and its
client URL inside the control plane's network namespace) and which supervised components must stop
while the store is replaced.

- save: SQLite's online backup API or ``etcdctl snapshot save``, both while the cluster runs; the
  file is verified after writing and its revision and hashes printed.
- restore: the file is checked first (a corrupt or foreign file is refused and nothing changes);
  then the control plane process (API server, scheduler, controller-manager) is stopped, the store
  replaced — for etcd by ``etcdctl snapshot restore`` into a new data dir with a new cluster token,
  the member restarted on it — the revision raised past the old one and compacted (so every
  informer gets 410 and relists), and the control plane started again. An HA lab's three members
  are restored the same way, each into its own new data dir from the one snapshot, and started
  together; its three control planes stop and start around it. Worker components keep
  running: their informers relist, and noded keeps the containers of pods that still exist and
  removes those of pods that do not.

Concurrency: holds the lab lock (``state.locked``) for the whole command, like ``up``/``down``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controlplane.storage import backup as store_backup
from controlplane.storage.factory import SQLITE_FILE
from lab import etcdcmd, state, supervisor, topology

CONTROL_PLANE_NODE = topology.CONTROL_PLANE_NAME
ETCD_ENDPOINT = "http://127.0.0.1:2379"  # inside kl-cp's network namespace (lab/labcmd.py build_components)
ETCD_MEMBER = topology.CONTROL_PLANE_NAME  # the member is named after its node (lab/labcmd.py)
ETCD_PEER_URL = "http://localhost:2380"  # etcd's default advertised peer URL, which the lab's member keeps
READY_TIMEOUT = 90.0


def say(msg: str) -> None:
    print(msg, flush=True)


def in_cp_netns(*argv: str) -> list[str]:
    return ["nsenter", f"--net=/var/run/netns/{CONTROL_PLANE_NODE}", "--", *argv]


def sqlite_db() -> Path:
    return state.STATE_DIR / SQLITE_FILE


def etcd_data_dir() -> Path:
    return state.STATE_DIR / "etcd"


@dataclass(frozen=True)
class EtcdMember:
    name: str  # the member's name, and the node (namespace) it runs on
    client_url: str
    peer_url: str
    data_dir: Path


@dataclass(frozen=True)
class EtcdTarget:
    """Where the lab's etcd is: its members, how etcdctl reaches them, and the control planes on it."""

    members: tuple[EtcdMember, ...]
    prefix: tuple[str, ...]  # put before etcdctl (nsenter into kl-cp for the single member)
    tls: tuple[str | None, str | None, str | None]  # (CA, client cert, client key); Nones: plain HTTP
    control_planes: tuple[str, ...]  # nodes whose ``controlplane`` stops during a restore

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    @property
    def tls_args(self) -> list[str]:
        ca, cert, key = self.tls
        return ["--cacert", ca, "--cert", cert or "", "--key", key or ""] if ca else []

    @property
    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)


def etcd_target(plan: dict[str, Any]) -> EtcdTarget:
    """The single member of ``kubelab up --store etcd`` in kl-cp, or an HA lab's members (plan["etcd"])."""
    etcd = plan.get("etcd")
    if not etcd or not etcd.get("members"):
        member = EtcdMember(ETCD_MEMBER, ETCD_ENDPOINT, ETCD_PEER_URL, etcd_data_dir())
        return EtcdTarget((member,), tuple(in_cp_netns()), (None, None, None), (CONTROL_PLANE_NODE,))
    from lab import hatopology, topology

    members = tuple(
        EtcdMember(m["name"], hatopology.client_url(m["ip"]), hatopology.peer_url(m["ip"]), Path(m["data_dir"]))
        for m in etcd["members"]
    )
    tls = etcd.get("tls") or {}
    cps = tuple(n.name for n in topology.lab_of(plan).control_planes)
    return EtcdTarget(members, (), (tls.get("ca"), tls.get("cert"), tls.get("key")), cps)


def _components(node: str, names: list[str], start: bool) -> None:
    cmd = "start-node" if start else "stop-node"
    answer = supervisor.request(state.SOCKET, {"cmd": cmd, "node": node, "names": names})
    if not answer.get("ok"):
        raise store_backup.BackupError(f"the lab supervisor refused to {cmd} {names} on {node}: {answer.get('error')}")


def _control_planes(t: EtcdTarget, start: bool) -> None:
    for node in t.control_planes:
        _components(node, ["controlplane"], start)


def _etcd_members(t: EtcdTarget, start: bool) -> None:
    for m in t.members:
        _components(m.name, ["etcd"], start)


def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise store_backup.BackupError(f"{what} did not come up within {timeout:.0f}s")


def _apiserver_ready() -> bool:
    from lab import labcmd

    return labcmd.apiserver_ready()


def etcd_statuses(t: EtcdTarget) -> list[dict[str, Any]]:
    """Each answering member's ``endpoint status`` (header revision, leader, raft term)."""
    ca, cert, key = t.tls
    args = ["--command-timeout=3s", "endpoint", "status", "-w", "json"]
    argv = etcdcmd.etcdctl_command(t.prefix, t.endpoints, {"ca": ca, "cert": cert, "key": key}, args)
    try:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return []
    try:  # etcdctl prints the members that answered even when another one did not (exit code 1)
        return [d["Status"] for d in json.loads(res.stdout)] if res.stdout.strip() else []
    except (ValueError, KeyError, TypeError):
        return []


def _all_members_healthy(t: EtcdTarget) -> bool:
    st = etcd_statuses(t)
    return len(st) == len(t.members) and all(s.get("leader") for s in st)


def _old_etcd_revision(t: EtcdTarget) -> int:
    st = etcd_statuses(t)
    if st:
        return max(int(s["header"]["revision"]) for s in st)
    # Every member is down: the newest backend file's revision, plus room for what the WAL held beyond it.
    revs = [
        store_backup.etcd_snapshot_status(m.data_dir / "member" / "snap" / "db")[1]
        for m in t.members
        if (m.data_dir / "member" / "snap" / "db").exists()
    ]
    return max(revs) + 100_000 if revs else 0


# --- commands -------------------------------------------------------------------------------------


def save(plan: dict[str, Any], dest: Path) -> int:
    if plan["store"] == "sqlite":
        info = store_backup.save_sqlite(sqlite_db(), dest)
    else:
        t = etcd_target(plan)
        info = store_backup.save_etcd(t.endpoints, dest, prefix=list(t.prefix), tls_args=t.tls_args)
    say(f"Saved {dest}: {info.describe()}")
    say(f"  sha256 {info.sha256}")
    return 0


def restore(plan: dict[str, Any], src: Path) -> int:
    info = store_backup.inspect_sqlite(src) if plan["store"] == "sqlite" else store_backup.inspect_etcd(src)
    say(f"Restoring {src}: {info.describe()}")
    if plan["store"] == "sqlite":
        _restore_sqlite(src)
    else:
        _restore_etcd(etcd_target(plan), src)
    say("The API server is back on the restored state; informers relist (their watches get 410 Gone) and")
    say("noded keeps the containers of pods that exist again and removes those of pods that do not.")
    return 0


def _restore_sqlite(src: Path) -> None:
    db = sqlite_db()
    old_rev = store_backup.current_sqlite_revision(db)
    _components(CONTROL_PLANE_NODE, ["controlplane"], start=False)
    try:
        rev = store_backup.install_sqlite(src, db, compact_above=old_rev)
    finally:  # on the restored file, or on the old one if refused
        _components(CONTROL_PLANE_NODE, ["controlplane"], start=True)
    say(f"  store replaced; revision {old_rev} → {rev} (all before it compacted); control plane restarting")
    _wait(_apiserver_ready, READY_TIMEOUT, "the API server")


def _restore_etcd(t: EtcdTarget, src: Path) -> None:
    """etcd's documented procedure: every member's new data dir from the one snapshot, with a new
    cluster token; all members stopped, swapped and started together; then the revision raised."""
    old_rev = _old_etcd_revision(t)
    stamp = time.strftime("%Y%m%d%H%M%S")
    token = f"kubelab-restore-{stamp}"
    swaps = [(m, m.data_dir.with_name(f"{m.data_dir.name}.restore-{stamp}"),
              m.data_dir.with_name(f"{m.data_dir.name}.before-restore-{stamp}")) for m in t.members]  # fmt: skip
    try:
        for m, fresh, _ in swaps:
            store_backup.restore_etcd_data_dir(
                src, fresh, name=m.name, initial_cluster=t.initial_cluster, peer_url=m.peer_url, token=token
            )
    except store_backup.BackupError:
        for _, fresh, _ in swaps:
            shutil.rmtree(fresh, ignore_errors=True)
        raise
    say(f"  snapshot restored into {len(swaps)} new data dir(s) (cluster token {token})")
    _control_planes(t, start=False)
    _etcd_members(t, start=False)
    for m, fresh, previous in swaps:
        os.rename(m.data_dir, previous)
        os.rename(fresh, m.data_dir)
    _etcd_members(t, start=True)  # together: the restored members elect a leader among themselves
    try:
        _wait(lambda: _all_members_healthy(t), 90, f"the restored etcd member(s) ({len(t.members)})")
    except store_backup.BackupError:
        _etcd_members(t, start=False)  # put the old members back as they were
        for m, fresh, previous in swaps:
            os.rename(m.data_dir, fresh)
            os.rename(previous, m.data_dir)
            shutil.rmtree(fresh, ignore_errors=True)
        _etcd_members(t, start=True)
        _control_planes(t, start=True)
        raise
    bump = [sys.executable, "-m", "controlplane.storage.backup", "bump-etcd", t.endpoints[0], str(old_rev), *t.tls_args]
    res = subprocess.run([*t.prefix, *bump], capture_output=True, text=True, timeout=600, check=False)
    _control_planes(t, start=True)
    if res.returncode != 0:
        raise store_backup.BackupError(res.stderr.strip() or "revision bump failed")
    say(f"  etcd restarted on it; revision {old_rev} → {res.stdout.strip()} (all before it compacted)")
    for _, _, previous in swaps:
        shutil.rmtree(previous, ignore_errors=True)
    _wait(_apiserver_ready, READY_TIMEOUT, "the API server")


def cmd_backup(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        say("kubelab backup: needs root: run it with sudo")
        return 1
    plan = state.read_plan()
    if plan is None:
        say("kubelab backup: no lab is up.")
        return 1
    path = Path(args.file).absolute()
    try:
        with state.locked():
            if args.action == "save":
                return save(plan, path)
            return restore(plan, path)
    except (state.LabBusy, store_backup.BackupError, OSError) as exc:
        say(f"kubelab backup {args.action}: {exc}")
        return 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "backup",
        help="save the cluster's store to a file, or restore it from one",
        description="save: an online, consistent copy (SQLite backup API / etcd snapshot), verified. "
        "restore: put a saved file back (the control plane restarts; clients relist).",
    )
    p.add_argument("action", choices=["save", "restore"])
    p.add_argument("file", help="the backup file")
    p.set_defaults(func=cmd_backup)
