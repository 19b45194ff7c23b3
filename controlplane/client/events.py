"""EventRecorder: write core/v1 Events about objects, aggregating repeats the way Kubernetes does.

Role: ``recorder.event(obj, "Warning", "FailedScheduling", "0/3 nodes are available: …")``.
An identical event (same involved object, type, reason, message and source) seen again is not a
new object: the existing Event's ``count`` is incremented and ``lastTimestamp`` moved (client-go's
``EventCorrelator`` / ``eventLogger``), so ``kubectl describe`` shows ``(x5 over 2m)``.

Events are best effort and never block the caller: they are handed to one background thread
through a bounded queue; when the queue is full the event is dropped and logged (like client-go's
broadcaster). ``flush(timeout)`` waits until everything queued has been sent (for tests and
shutdown). Event names are ``<object name>.<hex nanoseconds>``, unique per occurrence.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import httpx

from controlplane.api import errors
from controlplane.api.registry import EVENTS
from controlplane.client.rest import ApiClient

log = logging.getLogger(__name__)

_CACHE_SIZE = 4096


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def object_reference(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    ref = {
        "kind": obj.get("kind", ""),
        "apiVersion": obj.get("apiVersion", ""),
        "name": meta.get("name", ""),
        "uid": meta.get("uid", ""),
        "resourceVersion": meta.get("resourceVersion", ""),
    }
    if meta.get("namespace"):
        ref["namespace"] = meta["namespace"]
    return {k: v for k, v in ref.items() if v}


class EventRecorder:
    def __init__(self, client: ApiClient, component: str, host: str = "", *, max_pending: int = 5000) -> None:
        self.client = client
        self.component = component
        self.host = host
        # aggregation key -> (namespace, event name, count); LRU-bounded
        self._seen: OrderedDict[tuple[str, ...], tuple[str, str, int]] = OrderedDict()
        self._queue: queue.Queue[tuple[dict[str, Any], str, str, str] | None] = queue.Queue(max_pending)
        self._pending = 0
        self._idle = threading.Condition()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.dropped = 0

    def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Record an event about ``obj`` (``type_`` is "Normal" or "Warning"); never blocks."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"events-{self.component}", daemon=True)
                self._thread.start()
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait((obj, type_, reason, message))
        except queue.Full:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:  # rate-limited: a storm must not flood logs
                log.warning("%d event(s) dropped so far (queue full); latest: %s %s", self.dropped, reason, message)

    def flush(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending > 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self) -> None:
        t = self._thread
        if t is not None:
            self._queue.put(None)
            t.join(5)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self.record_now(*item)
            except (errors.ApiError, httpx.HTTPError, OSError) as e:
                log.info("event not recorded: %s", e)
            except Exception:
                log.exception("event not recorded")
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def record_now(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> dict[str, Any]:
        """Synchronously create (or bump the count of) the Event; returns it."""
        ref = object_reference(obj)
        namespace = ref.get("namespace") or "default"
        key = (
            ref.get("kind", ""),
            namespace,
            ref.get("name", ""),
            ref.get("uid", ""),
            type_,
            reason,
            message,
        )
        now = _now()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None:
                self._seen.move_to_end(key)
        if seen is not None:
            ns, name, count = seen
            try:
                ev = self.client.patch(
                    EVENTS, name, {"count": count + 1, "lastTimestamp": now}, namespace=ns, patch_type="merge"
                )
                with self._lock:
                    self._seen[key] = (ns, name, count + 1)
                return ev
            except errors.NotFound:
                pass  # expired or deleted: start a new one
        name = f"{ref.get('name') or 'object'}.{time.time_ns():x}"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": ref,
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": self.component, **({"host": self.host} if self.host else {})},
            "reportingComponent": self.component,
            "reportingInstance": self.host,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        ev = self.client.create(EVENTS, body, namespace)
        with self._lock:
            self._seen[key] = (namespace, name, 1)
            while len(self._seen) > _CACHE_SIZE:
                self._seen.popitem(last=False)
        return ev
