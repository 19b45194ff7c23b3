"""Where the one-machine lab keeps things, and the lock that serialises lab commands.

- ``/var/lib/kubelab``: cluster state (PKI, ``admin.kubeconfig``, the control plane's store, each
  node's root dir, the registry's storage, the built images). ``kubelab down`` removes it.
- ``/run/kubelab/lab``: the running lab's plan (``lab.json``), the supervisor's socket, the lock.
- ``/var/log/kubelab/<node>/<component>.log``: every component's log, named by ``kubelab status``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

STATE_DIR = Path("/var/lib/kubelab")
RUN_DIR = Path("/run/kubelab/lab")
LOG_DIR = Path("/var/log/kubelab")
PLAN_FILE = RUN_DIR / "lab.json"
SOCKET = RUN_DIR / "supervisor.sock"
ADMIN_KUBECONFIG = STATE_DIR / "admin.kubeconfig"
DNS_KUBECONFIG = STATE_DIR / "dns.kubeconfig"  # system:kubelab-dns (components never use the admin's)
USERS_DIR = STATE_DIR / "users"  # kubeconfigs of `kubelab user add` users (``<name>.kubeconfig``)


class LabBusy(Exception):
    pass


@contextlib.contextmanager
def locked() -> Iterator[None]:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / "lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise LabBusy("another kubelab command is working on the lab right now") from exc
        yield


def read_plan() -> dict[str, Any] | None:
    try:
        plan: dict[str, Any] = json.loads(PLAN_FILE.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return plan


def write_plan(plan: dict[str, Any]) -> None:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    tmp = PLAN_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(plan, indent=2))
    tmp.replace(PLAN_FILE)
