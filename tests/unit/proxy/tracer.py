"""The packet tracer the proxy tests use: now ``proxy/trace.py`` (``kubelab trace`` runs it too).

Re-exported here so the existing tests keep importing ``tests.unit.proxy.tracer``.
"""

from __future__ import annotations

from proxy.trace import Packet, Trace, Tracer

__all__ = ["Packet", "Trace", "Tracer"]
