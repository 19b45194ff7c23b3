"""Object-metadata helpers shared by the server, the client and every component.

Role: small pure functions over the ``metadata`` of plain-dict objects — timestamps in the
RFC 3339 form Kubernetes writes (``2026-11-23T18:27:11Z``, UTC, whole seconds), uids, and the
``namespace/name`` keys that informers, work queues and the store use (client-go's
``MetaNamespaceKeyFunc`` / ``SplitMetaNamespaceKey``).

Invariants: ``split_key(object_key(obj)) == (namespace or None, name)``; a key never has more
than one ``/``. No I/O; safe from any thread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from controlplane.api import errors

__all__ = [
    "format_time",
    "get_meta",
    "name_of",
    "namespace_of",
    "new_uid",
    "now_rfc3339",
    "object_key",
    "parse_time",
    "split_key",
]


def format_time(t: datetime) -> str:
    """RFC 3339 in UTC with second precision, as metav1.Time marshals (``…T18:27:11Z``)."""
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# (whole second, its RFC 3339 text): every object created in one second shares the string.
_now_cache: tuple[int, str] = (-1, "")


def now_rfc3339() -> str:
    """The current time as ``format_time`` writes it (whole seconds, so it is formatted once a second)."""
    global _now_cache
    second = int(time.time())
    cached = _now_cache
    if cached[0] == second:
        return cached[1]
    text = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
    _now_cache = (second, text)
    return text


def parse_time(s: str) -> datetime:
    """Parse an RFC 3339 timestamp (``Z`` or an offset, optional fractional seconds) to aware UTC."""
    text = s.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        t = datetime.fromisoformat(text)
    except ValueError as e:
        raise errors.BadRequest(f"invalid RFC 3339 timestamp {s!r}") from e
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC)


#: ``new_uid``'s randomness, read from the kernel 256 uids at a time: one ``getrandom`` call per
#: create was ~5% of the API server's event loop under load (a system call that also lets the
#: other threads take the interpreter lock). The bytes are the same CSPRNG's; each is used once.
_UID_BATCH = 16 * 256
_uid_pool: list[bytes] = []
_uid_lock = threading.Lock()
os.register_at_fork(after_in_child=_uid_pool.clear)  # a forked child must not reuse its parent's


def new_uid() -> str:
    """A random RFC 4122 version-4 uid, the form Kubernetes uses for ``metadata.uid``.

    ``str(uuid.uuid4())`` without the ``UUID`` object in between (this runs for every create).
    """
    with _uid_lock:
        if not _uid_pool:
            raw = os.urandom(_UID_BATCH)
            _uid_pool.extend(raw[i : i + 16] for i in range(0, _UID_BATCH, 16))
        b = bytearray(_uid_pool.pop())
    b[6] = (b[6] & 0x0F) | 0x40  # version 4
    b[8] = (b[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def get_meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def name_of(obj: Mapping[str, Any]) -> str:
    return str(get_meta(obj).get("name") or "")


def namespace_of(obj: Mapping[str, Any]) -> str:
    return str(get_meta(obj).get("namespace") or "")


def object_key(obj: Mapping[str, Any]) -> str:
    """``"ns/name"`` for namespaced objects, ``"name"`` for cluster-scoped ones."""
    ns = namespace_of(obj)
    name = name_of(obj)
    return f"{ns}/{name}" if ns else name


def split_key(key: str) -> tuple[str | None, str]:
    """Inverse of :func:`object_key`: ``"ns/name"`` → ``("ns", "name")``, ``"name"`` → ``(None, "name")``."""
    parts = key.split("/")
    if len(parts) == 1:
        return None, parts[0]
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError(f"unexpected key format: {key!r}")
