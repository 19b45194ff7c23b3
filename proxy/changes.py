"""Change trackers: what changed per Service since the last sync (kube-proxy's
ServiceChangeTracker / EndpointsChangeTracker).

Role: informer handlers (any thread) report objects; the trackers parse them right away (so a
bad object is logged when it arrives, once) and remember, per Service key ``namespace/name``,
the latest parsed state. ``take()`` hands the pending changes to the proxier's sync and starts a
new batch. A change that cancels out (the object went back to what was applied) still shows up
as changed; the proxier's renderer and planner find that nothing differs and write nothing.

Concurrency: every method takes the tracker's lock; ``take`` is atomic with respect to updates.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proxy.model import (
    Endpoint,
    ServicePort,
    SliceInfo,
    merge_slices,
    parse_endpoint_slice,
    parse_service,
    service_key,
)

log = logging.getLogger(__name__)


class ServiceChangeTracker:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[str, list[ServicePort]] = {}
        self.errors: dict[str, list[str]] = {}  # service key -> why some ports were skipped

    def update(self, obj: Mapping[str, Any], *, deleted: bool = False) -> None:
        key = service_key(obj)
        ports, errors = ([], []) if deleted else parse_service(obj)
        for err in errors:
            log.warning("skipping what cannot be programmed: %s", err)
        with self._lock:
            self._pending[key] = ports
            if errors:
                self.errors[key] = errors
            else:
                self.errors.pop(key, None)

    def take(self) -> dict[str, list[ServicePort]]:
        """Pending changes: service key -> its ports now ([] when deleted or unprogrammable)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending


@dataclass
class EndpointsUpdate:
    """Per changed Service: its endpoints per (port name, protocol), and slice trigger times."""

    endpoints: dict[str, dict[tuple[str, str], tuple[Endpoint, ...]]] = field(default_factory=dict)
    trigger_times: dict[str, list[str]] = field(default_factory=dict)


class EndpointsChangeTracker:
    """Keeps every EndpointSlice (parsed) per Service; reports Services whose slices changed."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slices: dict[str, dict[str, SliceInfo]] = {}  # service key -> slice name -> info
        self._dirty: set[str] = set()
        self._triggers: dict[str, list[str]] = {}
        self.errors: dict[str, list[str]] = {}  # slice key -> problems

    def update(self, obj: Mapping[str, Any], *, deleted: bool = False) -> None:
        info, errors = parse_endpoint_slice(obj)
        meta = obj.get("metadata") or {}
        slice_key = f"{meta.get('namespace') or 'default'}/{meta.get('name', '')}"
        for err in errors:
            log.warning("skipping what cannot be programmed: %s", err)
        with self._lock:
            if errors:
                self.errors[slice_key] = errors
            else:
                self.errors.pop(slice_key, None)
            if info is None:
                return
            bucket = self._slices.setdefault(info.service, {})
            if deleted:
                bucket.pop(info.name, None)
                if not bucket:
                    del self._slices[info.service]
            else:
                bucket[info.name] = info
                if info.trigger_time:
                    self._triggers.setdefault(info.service, []).append(info.trigger_time)
            self._dirty.add(info.service)

    def take(self) -> EndpointsUpdate:
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            triggers, self._triggers = self._triggers, {}
            update = EndpointsUpdate(trigger_times=triggers)
            for svc in dirty:
                update.endpoints[svc] = merge_slices(self._slices.get(svc, {}).values())
        return update
