"""Cluster state storage: one ``Store`` interface, backends for SQLite, etcd and memory."""

from controlplane.storage.interface import (
    CompactedError,
    ConflictError,
    Event,
    EventType,
    KeyExistsError,
    KeyNotFoundError,
    KeyValue,
    NowaitCreates,
    Store,
    StoreError,
    Watch,
)

__all__ = [
    "CompactedError",
    "ConflictError",
    "Event",
    "EventType",
    "KeyExistsError",
    "KeyNotFoundError",
    "KeyValue",
    "NowaitCreates",
    "Store",
    "StoreError",
    "Watch",
]
