"""``open_store``: pick and open a backend from the server's flags (``--store``, ``--data-dir``).

- ``sqlite`` (the default of the API server): ``<data_dir>/state.db`` (+ ``-wal``/``-shm`` and a
  ``.lock`` held while open). One process owns it.
- ``etcd``: the endpoints given (``--etcd-endpoints http://127.0.0.1:2379,...``); data_dir unused.
  ``https://`` endpoints use ``etcd_tls`` (CA, client certificate, client key: kube-apiserver's
  ``--etcd-cafile``, ``--etcd-certfile``, ``--etcd-keyfile``).
- ``memory``: nothing survives the process (tests, demos).

Bad input raises ``ValueError`` naming what is wrong, before anything is opened or created.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from controlplane.storage.interface import Store

StoreKind = Literal["memory", "sqlite", "etcd"]
KINDS: tuple[str, ...] = ("memory", "sqlite", "etcd")
SQLITE_FILE = "state.db"


def open_store(
    kind: str,
    data_dir: Path | str,
    etcd_endpoints: list[str] | None = None,
    etcd_tls: tuple[Path | str | None, Path | str | None, Path | str | None] = (None, None, None),
) -> Store:
    if kind not in KINDS:
        raise ValueError(f"unknown store {kind!r}: expected one of {', '.join(KINDS)}")
    if kind == "memory":
        from controlplane.storage.memory import MemoryStore

        return MemoryStore()
    if kind == "sqlite":
        from controlplane.storage.sqlite import SqliteStore

        return SqliteStore(Path(data_dir) / SQLITE_FILE)
    endpoints = [e.strip() for e in (etcd_endpoints or []) if e.strip()]
    if not endpoints:
        raise ValueError("--store etcd needs --etcd-endpoints (like http://127.0.0.1:2379)")
    from controlplane.storage.etcd import EtcdStore

    ca, cert, key = etcd_tls
    return EtcdStore(endpoints, ca=ca, cert=cert, key=key)


def parse_endpoints(value: str) -> list[str]:
    """``"http://a:2379, http://b:2379"`` → a list (the form of ``--etcd-endpoints``)."""
    return [e.strip() for e in value.split(",") if e.strip()]
