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
  informer gets 410 and relists), and the control plane started again. Worker components keep
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
from pathlib import Path
from typing import Any

from controlplane.storage import backup as store_backup
from controlplane.storage.factory import SQLITE_FILE
from lab import state, supervisor

CONTROL_PLANE_NODE = "kl-cp"
ETCD_ENDPOINT = "http://127.0.0.1:2379"  # inside kl-cp's network namespace (lab/labcmd.py build_components)
ETCD_MEMBER = "kl-cp"
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


def _components(names: list[str], start: bool) -> None:
    cmd = "start-node" if start else "stop-node"
    answer = supervisor.request(state.SOCKET, {"cmd": cmd, "node": CONTROL_PLANE_NODE, "names": names})
    if not answer.get("ok"):
        raise store_backup.BackupError(f"the lab supervisor refused to {cmd} {names}: {answer.get('error')}")


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


def etcd_status() -> dict[str, Any] | None:
    """The member's ``endpoint status`` (header revision, leader, raft term), None if unreachable."""
    try:
        res = subprocess.run(
            in_cp_netns(
                "etcdctl", "--endpoints", ETCD_ENDPOINT, "--command-timeout=3s", "endpoint", "status", "-w", "json"
            ),
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None
    if res.returncode != 0:
        return None
    try:
        doc = json.loads(res.stdout)
        status: dict[str, Any] = doc[0]["Status"]
        return status
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _etcd_healthy() -> bool:
    return etcd_status() is not None


def _old_etcd_revision() -> int:
    st = etcd_status()
    if st is not None:
        return int(st["header"]["revision"])
    # The member is down: its backend file's revision, plus room for what its WAL held beyond it.
    db = etcd_data_dir() / "member" / "snap" / "db"
    if db.exists():
        return store_backup.etcd_snapshot_status(db)[1] + 100_000
    return 0


# --- commands -------------------------------------------------------------------------------------


def save(plan: dict[str, Any], dest: Path) -> int:
    if plan["store"] == "sqlite":
        info = store_backup.save_sqlite(sqlite_db(), dest)
    else:
        info = store_backup.save_etcd([ETCD_ENDPOINT], dest, prefix=in_cp_netns())
    say(f"Saved {dest}: {info.describe()}")
    say(f"  sha256 {info.sha256}")
    return 0


def restore(plan: dict[str, Any], src: Path) -> int:
    info = store_backup.inspect_sqlite(src) if plan["store"] == "sqlite" else store_backup.inspect_etcd(src)
    say(f"Restoring {src}: {info.describe()}")
    if plan["store"] == "sqlite":
        _restore_sqlite(src)
    else:
        _restore_etcd(src)
    say("The API server is back on the restored state; informers relist (their watches get 410 Gone) and")
    say("noded keeps the containers of pods that exist again and removes those of pods that do not.")
    return 0


def _restore_sqlite(src: Path) -> None:
    db = sqlite_db()
    old_rev = store_backup.current_sqlite_revision(db)
    _components(["controlplane"], start=False)
    try:
        rev = store_backup.install_sqlite(src, db, compact_above=old_rev)
    finally:
        _components(["controlplane"], start=True)  # on the restored file, or on the old one if refused
    say(f"  store replaced; revision {old_rev} → {rev} (all before it compacted); control plane restarting")
    _wait(_apiserver_ready, READY_TIMEOUT, "the API server")


def _restore_etcd(src: Path) -> None:
    data = etcd_data_dir()
    old_rev = _old_etcd_revision()
    stamp = time.strftime("%Y%m%d%H%M%S")
    fresh = data.with_name(f"etcd.restore-{stamp}")
    previous = data.with_name(f"etcd.before-restore-{stamp}")
    store_backup.restore_etcd_data_dir(
        src,
        fresh,
        name=ETCD_MEMBER,
        initial_cluster=f"{ETCD_MEMBER}={ETCD_PEER_URL}",
        peer_url=ETCD_PEER_URL,
        token=f"kubelab-restore-{stamp}",
    )
    say(f"  snapshot restored into a new data dir (cluster token kubelab-restore-{stamp})")
    _components(["controlplane", "etcd"], start=False)
    os.rename(data, previous)
    os.rename(fresh, data)
    _components(["etcd"], start=True)
    try:
        _wait(_etcd_healthy, 60, "the restored etcd member")
    except store_backup.BackupError:
        # put the old member back as it was
        _components(["etcd"], start=False)
        os.rename(data, fresh)
        os.rename(previous, data)
        shutil.rmtree(fresh, ignore_errors=True)
        _components(["etcd", "controlplane"], start=True)
        raise
    res = subprocess.run(
        in_cp_netns(sys.executable, "-m", "controlplane.storage.backup", "bump-etcd", ETCD_ENDPOINT, str(old_rev)),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    _components(["controlplane"], start=True)
    if res.returncode != 0:
        raise store_backup.BackupError(res.stderr.strip() or "revision bump failed")
    say(f"  etcd member restarted on it; revision {old_rev} → {res.stdout.strip()} (all before it compacted)")
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
