"""``Compactor``: forget old store history periodically, the way kube-apiserver does.

Role: without compaction the SQLite log and etcd's history grow forever. Every ``interval``
seconds the compactor compacts at the revision it observed one interval earlier, so any watcher
that resumes from a revision younger than ``interval`` can still replay (older gets 410 Gone and
relists, as with Kubernetes, whose default interval is 5 minutes).

Concurrency: one daemon thread; ``stop()`` wakes and joins it. Failures are logged and retried
at the next tick (compaction is an optimisation, never a correctness requirement).
"""

from __future__ import annotations

import logging
import threading

from controlplane.storage.interface import Store

log = logging.getLogger(__name__)


class Compactor:
    def __init__(self, store: Store, interval: float = 300.0) -> None:
        if interval <= 0:
            raise ValueError(f"compaction interval must be positive, got {interval}")
        self._store = store
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-compactor", daemon=True)
        self.last_compacted = 0

    def start(self) -> Compactor:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        previous: int | None = None
        while not self._stop.wait(self._interval if previous is not None else 0):
            try:
                current = self._store.current_revision()
                if previous is not None and previous > self.last_compacted:
                    self._store.compact(previous)
                    self.last_compacted = previous
                    log.info("compacted store history at revision %d", previous)
                previous = current
            except Exception as exc:
                log.warning("store compaction failed (will retry): %s", exc)
