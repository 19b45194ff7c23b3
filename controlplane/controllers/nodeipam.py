"""Node IPAM: give every Node a ``spec.podCIDR`` carved out of the cluster CIDR.

Role: Kubernetes' range allocator. The cluster CIDR (default 10.244.0.0/16) is cut into
``/node-cidr-mask-size`` blocks (default /24); block *i* is ``10.244.i.0/24``.

Which block a node gets (``CidrSet.allocate``), first that applies:
1. the node already has a ``spec.podCIDR`` (set by us earlier, or pre-set) → honoured, marked used;
2. a preferred index that is free: 0 for a node labelled ``node-role.kubernetes.io/control-plane``
   or named like one (``kl-cp``, ``*-control-plane``, ``*-master``);
   N for a node whose name ends in a number N (``kl-node1`` → 10.244.1.0/24, ``kl-node2`` →
   10.244.2.0/24: DESIGN.md §3 "worker N owns 10.244.N.0/24", whatever order nodes register in);
3. the lowest free index from 1 (index 0 is kept for the control plane), then 0 as a last resort.

Stable across restarts: the set is rebuilt from the nodes' existing podCIDRs before the first
allocation; a CIDR is freed when its node is deleted. We also remember what we assigned, so a
stale cache showing a node without its CIDR gets the same block again, never a second one.

Concurrency: one lock around the set; sync runs on worker threads, handlers on the informer's.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import threading

from controlplane.api import errors
from controlplane.api.registry import NODES
from controlplane.controllers.base import Controller, ControllerContext
from controlplane.controllers.util import Obj, labels_of, name_of

log = logging.getLogger(__name__)

CONTROL_PLANE_LABEL = "node-role.kubernetes.io/control-plane"
_TRAILING_NUMBER = re.compile(r"(\d+)$")
# The lab's control-plane node is ``kl-cp``; it must not take worker 1's block if it registers
# before the label is set (or without it).
_CONTROL_PLANE_NAME = re.compile(r"(^|-)(cp|control-plane|master)$")


class CidrExhausted(Exception):
    pass


class CidrSet:
    """Blocks of one size inside a cluster CIDR, by index. Not thread-safe (the controller locks)."""

    def __init__(self, cluster_cidr: str, mask_size: int) -> None:
        try:
            self.network = ipaddress.ip_network(cluster_cidr, strict=True)
        except ValueError as exc:
            raise ValueError(f"invalid --cluster-cidr {cluster_cidr!r}: {exc}") from exc
        if not isinstance(self.network, ipaddress.IPv4Network):
            raise ValueError(f"--cluster-cidr {cluster_cidr!r}: only IPv4 is supported")
        if not self.network.prefixlen <= mask_size <= 30:
            raise ValueError(
                f"--node-cidr-mask-size {mask_size} must be between the cluster prefix /{self.network.prefixlen} and 30"
            )
        self.mask_size = mask_size
        self.capacity = 1 << (mask_size - self.network.prefixlen)
        self.used: set[int] = set()

    def cidr(self, index: int) -> str:
        size = 1 << (32 - self.mask_size)
        base = int(self.network.network_address) + index * size
        return f"{ipaddress.IPv4Address(base)}/{self.mask_size}"

    def index_of(self, cidr: str) -> int | None:
        """The block index of ``cidr``, or None if it is not one of our blocks."""
        try:
            net = ipaddress.ip_network(cidr, strict=True)
        except ValueError:
            return None
        if net.prefixlen != self.mask_size or not net.subnet_of(self.network):  # type: ignore[arg-type]
            return None
        size = 1 << (32 - self.mask_size)
        return (int(net.network_address) - int(self.network.network_address)) // size

    def occupy(self, cidr: str) -> bool:
        i = self.index_of(cidr)
        if i is None:
            return False
        self.used.add(i)
        return True

    def release(self, cidr: str) -> None:
        i = self.index_of(cidr)
        if i is not None:
            self.used.discard(i)

    def allocate(self, preferred: int | None = None) -> str:
        if preferred is not None and 0 <= preferred < self.capacity and preferred not in self.used:
            self.used.add(preferred)
            return self.cidr(preferred)
        for i in [*range(1, self.capacity), 0]:
            if i not in self.used:
                self.used.add(i)
                return self.cidr(i)
        raise CidrExhausted(f"no free /{self.mask_size} left in {self.network}")


def preferred_index(node: Obj) -> int | None:
    if CONTROL_PLANE_LABEL in labels_of(node) or _CONTROL_PLANE_NAME.search(name_of(node)):
        return 0
    m = _TRAILING_NUMBER.search(name_of(node))
    return int(m.group(1)) if m else None


def node_pod_cidr(node: Obj) -> str:
    spec = node.get("spec") or {}
    cidr = spec.get("podCIDR") or ((spec.get("podCIDRs") or [None])[0])
    return str(cidr or "")


class NodeIpamController(Controller):
    name = "nodeipam"
    workers = 1  # allocation is cheap; one worker keeps the order of first allocations simple

    def __init__(self, ctx: ControllerContext, cluster_cidr: str = "10.244.0.0/16", mask_size: int = 24) -> None:
        super().__init__(ctx)
        self.cidrs = CidrSet(cluster_cidr, mask_size)
        self._lock = threading.Lock()
        self._rebuilt = False
        self._assigned: dict[str, str] = {}
        self.node_informer = ctx.informers.get(NODES)
        self.node_informer.add_handler(
            on_add=self.enqueue, on_update=lambda _o, n: self.enqueue(n), on_delete=self._node_deleted
        )

    def _node_deleted(self, node: Obj) -> None:
        with self._lock:
            cidr = self._assigned.pop(name_of(node), None) or node_pod_cidr(node)
            if cidr:
                self.cidrs.release(cidr)

    def _rebuild_locked(self) -> None:
        # Before the first allocation: every CIDR already on a node is taken (restart safety).
        if self._rebuilt:
            return
        for n in self.node_informer.list():
            c = node_pod_cidr(n)
            if c and self.cidrs.occupy(c):
                self._assigned[name_of(n)] = c
        self._rebuilt = True

    def sync(self, key: str) -> None:
        node = self.node_informer.get(key)
        if node is None:
            return
        with self._lock:
            self._rebuild_locked()
            have = node_pod_cidr(node)
            if have:
                if self.cidrs.occupy(have):
                    self._assigned[key] = have
                else:
                    log.warning("node %s has podCIDR %s outside cluster CIDR %s", key, have, self.cidrs.network)
                return
            cidr = self._assigned.get(key)
            if cidr is None:
                cidr = self.cidrs.allocate(preferred_index(node))
                self._assigned[key] = cidr
        try:
            self.client.patch(NODES, key, {"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
        except errors.NotFound:
            with self._lock:
                self._assigned.pop(key, None)
                self.cidrs.release(cidr)
            return
        log.info("node %s: allocated podCIDR %s", key, cidr)
        self.ctx.event(node, "Normal", "CIDRAssignmentSucceeded", f"Node {key} got podCIDR {cidr}")
