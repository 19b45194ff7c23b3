"""``kubelab store``: look inside the cluster's store — keys, values, and the revision log.

Role: DESIGN.md's "inspectable by design" for the storage layer. A learner can see that a
``kubectl apply`` became a row in the kine table (or an etcd revision), which revision is an
object's ``resourceVersion``, and what a watch replays:

    kubelab store keys /registry/pods/           # key, create revision, mod revision, size
    kubelab store get /registry/pods/default/web # the stored JSON
    kubelab store log --since 120                # the change log: revision, CREATE/UPDATE/DELETE, key

``--store sqlite`` (default) reads ``<data-dir>/state.db`` **read-only and without the owner's
lock**, so it works beside a running API server (WAL lets readers in while the server writes);
``--store etcd`` talks to ``--etcd-endpoints``. Nothing here writes.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from pathlib import Path
from typing import Any

import orjson

from controlplane.storage.factory import SQLITE_FILE, parse_endpoints
from controlplane.storage.interface import Event, EventType, KeyValue, StoreError

_DESCRIPTION = """\
Read-only look at the cluster's store (safe beside a running API server):

  kubelab store keys /registry/pods/            key, create revision, mod revision, size
  kubelab store get /registry/pods/default/web  the stored JSON of one object
  kubelab store log --since 120                 the change log: revision, type, key

An object's resourceVersion is its mod revision here."""


class SqliteReader:
    """Read-only view of a SqliteStore file (kine table), safe while its owner runs."""

    def __init__(self, path: Path) -> None:
        if not path.exists():
            raise FileNotFoundError(f"no store at {path} (is --data-dir right?)")
        self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def keys(self, prefix: str) -> list[KeyValue]:
        rows = self._db.execute(
            "SELECT k.name, k.value, k.create_revision, k.id FROM kine AS k"
            " JOIN (SELECT MAX(id) AS id FROM kine WHERE name >= ? AND name < ? GROUP BY name) AS m"
            " ON k.id = m.id WHERE k.deleted = 0 ORDER BY k.name",
            (prefix, prefix + "\U0010ffff"),
        )
        return [KeyValue(n, bytes(v), int(c), int(i)) for n, v, c, i in rows if n.startswith(prefix)]

    def get(self, key: str) -> KeyValue | None:
        row = self._db.execute(
            "SELECT name, value, create_revision, id, deleted FROM kine WHERE name = ? ORDER BY id DESC LIMIT 1",
            (key,),
        ).fetchone()
        if row is None or row[4]:
            return None
        return KeyValue(row[0], bytes(row[1]), int(row[2]), int(row[3]))

    def log(self, prefix: str, since: int, limit: int) -> list[Event]:
        rows = self._db.execute(
            "SELECT id, name, created, deleted, value FROM kine"
            " WHERE id > ? AND name >= ? AND name < ? ORDER BY id LIMIT ?",
            (since, prefix, prefix + "\U0010ffff", limit),
        )
        out = []
        for rid, name, created, deleted, value in rows:
            kind = EventType.DELETE if deleted else EventType.CREATE if created else EventType.UPDATE
            out.append(Event(kind, name, bytes(value), int(rid)))
        return out

    def revision(self) -> tuple[int, int]:
        """(current revision, compacted revision)."""
        seq = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'kine'").fetchone()
        comp = self._db.execute("SELECT value FROM kine_meta WHERE name = 'compact_revision'").fetchone()
        return (int(seq[0]) if seq else 0), (int(comp[0]) if comp else 0)

    def close(self) -> None:
        self._db.close()


class EtcdReader:
    def __init__(
        self, endpoints: list[str], ca: Path | None = None, cert: Path | None = None, key: Path | None = None
    ) -> None:
        from controlplane.storage.etcd import EtcdStore

        self._store = EtcdStore(endpoints, ca=ca, cert=cert, key=key)

    def keys(self, prefix: str) -> list[KeyValue]:
        return self._store.list(prefix)[0]

    def get(self, key: str) -> KeyValue | None:
        return self._store.get(key)

    def log(self, prefix: str, since: int, limit: int) -> list[Event]:
        out: list[Event] = []
        w = self._store.watch(prefix, since)
        try:
            while len(out) < limit:
                batch = w.next_batch(timeout=0.5)  # history arrives at once; a quiet pause ends it
                if not batch:
                    break
                out.extend(batch)
        finally:
            w.close()
        return out[:limit]

    def revision(self) -> tuple[int, int]:
        return self._store.current_revision(), 0

    def close(self) -> None:
        self._store.close()


def open_reader(args: argparse.Namespace) -> SqliteReader | EtcdReader:
    if args.store == "etcd":
        endpoints = parse_endpoints(args.etcd_endpoints or "")
        if not endpoints:
            raise ValueError("--store etcd needs --etcd-endpoints (like http://127.0.0.1:2379)")
        return EtcdReader(
            endpoints,
            getattr(args, "etcd_cafile", None),
            getattr(args, "etcd_certfile", None),
            getattr(args, "etcd_keyfile", None),
        )
    return SqliteReader(Path(args.data_dir) / SQLITE_FILE)


def run(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    try:
        reader = open_reader(args)
    except (FileNotFoundError, ValueError, sqlite3.Error) as exc:
        print(f"kubelab store: {exc}", file=sys.stderr)
        return 1
    try:
        return _run(reader, args, out)
    except (StoreError, sqlite3.Error) as exc:
        print(f"kubelab store: {exc}", file=sys.stderr)
        return 1
    finally:
        reader.close()


def _run(reader: SqliteReader | EtcdReader, args: argparse.Namespace, out: Any) -> int:
    if args.store_command == "keys":
        rev, compacted = reader.revision()
        print(f"# revision {rev}" + (f", compacted up to {compacted}" if compacted else ""), file=out)
        print(f"{'CREATED':>8} {'MODIFIED':>8} {'BYTES':>7}  KEY", file=out)
        for kv in reader.keys(args.prefix):
            print(f"{kv.create_revision:>8} {kv.mod_revision:>8} {len(kv.value):>7}  {kv.key}", file=out)
    elif args.store_command == "get":
        found = reader.get(args.key)
        if found is None:
            print(f"kubelab store: {args.key} not found", file=sys.stderr)
            return 1
        print(f"# create_revision {found.create_revision}, mod_revision {found.mod_revision}", file=out)
        try:
            print(orjson.dumps(orjson.loads(found.value), option=orjson.OPT_INDENT_2).decode(), file=out)
        except orjson.JSONDecodeError:
            print(repr(found.value), file=out)
    else:  # log
        for ev in reader.log(args.prefix, args.since, args.limit):
            print(f"{ev.revision:>8} {ev.type.value:<6} {ev.key}", file=out)
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "store",
        help="look inside the store: keys, values, the revision log (read-only)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--store", choices=["sqlite", "etcd"], default="sqlite")
    p.add_argument("--data-dir", default="/var/lib/kubelab", help="the API server's --data-dir (sqlite)")
    p.add_argument("--etcd-endpoints", default="", help="comma-separated, like http://127.0.0.1:2379")
    p.add_argument("--etcd-cafile", type=Path, default=None, help="verify https etcd endpoints with this CA")
    p.add_argument("--etcd-certfile", type=Path, default=None, help="client certificate shown to etcd (TLS)")
    p.add_argument("--etcd-keyfile", type=Path, default=None, help="its key")
    sub = p.add_subparsers(dest="store_command", metavar="WHAT", required=True)
    keys = sub.add_parser("keys", help="current keys under a prefix, with revisions")
    keys.add_argument("prefix", nargs="?", default="/registry/")
    get = sub.add_parser("get", help="one key's stored value")
    get.add_argument("key")
    log = sub.add_parser("log", help="the change log: revision, type, key")
    log.add_argument("prefix", nargs="?", default="/registry/")
    log.add_argument("--since", type=int, default=0, help="only revisions after this one")
    log.add_argument("--limit", type=int, default=1000)
    p.set_defaults(func=run)
