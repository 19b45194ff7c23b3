"""Typed read models: the fields the agents read of Pods, Nodes, Services, EndpointSlices and Leases.

Role: what a component reads of an object, as frozen ``msgspec.Struct``\\ s with Kubernetes' field
names (``pod_cidr`` is ``spec.podCIDR`` on the wire, ``rename="camel"`` plus explicit names where
Kubernetes' spelling is not plain camelCase). An informer decodes each object once, when it enters
the cache (``Informer(..., decode=Node.decode)``), so a controller reads ``node.spec.pod_cidr``
and mypy knows what a Node looks like.

Invariants:
- Read models, not the API's schema: each holds only the fields some component reads; unknown
  fields are ignored when decoding, so the server may send anything Kubernetes sends. Writes
  still go out as the JSON objects the API takes (a read model is never sent back).
- Decoding is lenient where the wire is: absent fields get Kubernetes' zero values (``""``,
  ``0``, empty collections), so a half-filled object from a test or an old server decodes.
  A field of the wrong JSON type raises ``msgspec.ValidationError`` naming its path.
- Frozen: a cached object may be read by several threads; nobody mutates it.

Cost (``python -m tests.bench.bench_models``): decoding a Node of the lab (~1.5 KB of JSON) costs a
few microseconds — less than parsing its JSON — once per watch event.
"""

from __future__ import annotations

from typing import Any, Self

import msgspec


class _Model(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    @classmethod
    def decode(cls, obj: dict[str, Any]) -> Self:
        """The read model of a wire object (a dict as the API returns it)."""
        return msgspec.convert(obj, cls, strict=False)


# ---- metadata ------------------------------------------------------------------------------------


class OwnerReference(_Model, frozen=True):
    api_version: str = ""
    kind: str = ""
    name: str = ""
    uid: str = ""
    controller: bool = False


class ObjectMeta(_Model, frozen=True):
    name: str = ""
    namespace: str = ""
    uid: str = ""
    resource_version: str = ""
    generation: int = 0
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    creation_timestamp: str | None = None
    deletion_timestamp: str | None = None
    owner_references: tuple[OwnerReference, ...] = ()

    @property
    def key(self) -> str:
        """``namespace/name``, or ``name`` for cluster-scoped objects (client-go's key)."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def controller_ref(self) -> OwnerReference | None:
        return next((r for r in self.owner_references if r.controller), None)


class Condition(_Model, frozen=True):
    type: str = ""
    status: str = ""
    reason: str = ""
    message: str = ""
    last_heartbeat_time: str | None = None
    last_transition_time: str | None = None


# ---- Node ----------------------------------------------------------------------------------------


class Taint(_Model, frozen=True):
    key: str = ""
    value: str = ""
    effect: str = ""


class NodeSpec(_Model, frozen=True):
    pod_cidr: str = msgspec.field(default="", name="podCIDR")
    pod_cidrs: tuple[str, ...] = msgspec.field(default=(), name="podCIDRs")
    unschedulable: bool = False
    taints: tuple[Taint, ...] = ()


class NodeAddress(_Model, frozen=True):
    type: str = ""
    address: str = ""


class NodeStatus(_Model, frozen=True):
    addresses: tuple[NodeAddress, ...] = ()
    conditions: tuple[Condition, ...] = ()
    capacity: dict[str, str] = {}
    allocatable: dict[str, str] = {}


class Node(_Model, frozen=True):
    metadata: ObjectMeta = ObjectMeta()
    spec: NodeSpec = NodeSpec()
    status: NodeStatus = NodeStatus()

    @property
    def name(self) -> str:
        return self.metadata.name

    def internal_ip(self) -> str | None:
        return next((a.address for a in self.status.addresses if a.type == "InternalIP" and a.address), None)

    def pod_cidrs(self) -> list[str]:
        """``spec.podCIDRs`` with ``spec.podCIDR`` first when only the singular is set (older writers)."""
        cidrs = list(self.spec.pod_cidrs)
        if self.spec.pod_cidr and self.spec.pod_cidr not in cidrs:
            cidrs.insert(0, self.spec.pod_cidr)
        return cidrs

    def condition(self, type_: str) -> Condition | None:
        return next((c for c in self.status.conditions if c.type == type_), None)


# ---- Lease ---------------------------------------------------------------------------------------


class LeaseSpec(_Model, frozen=True):
    holder_identity: str = ""
    lease_duration_seconds: int = 0
    acquire_time: str | None = None
    renew_time: str | None = None
    lease_transitions: int = 0


class Lease(_Model, frozen=True):
    metadata: ObjectMeta = ObjectMeta()
    spec: LeaseSpec = LeaseSpec()


# ---- Service and EndpointSlice -------------------------------------------------------------------


class ServicePort(_Model, frozen=True):
    name: str = ""
    protocol: str = "TCP"
    port: int = 0
    target_port: int | str = 0
    node_port: int = 0
    app_protocol: str = ""


class ServiceSpec(_Model, frozen=True):
    type: str = "ClusterIP"
    cluster_ip: str = msgspec.field(default="", name="clusterIP")
    cluster_ips: tuple[str, ...] = msgspec.field(default=(), name="clusterIPs")
    ports: tuple[ServicePort, ...] = ()
    selector: dict[str, str] = {}
    session_affinity: str = "None"
    external_name: str = ""
    publish_not_ready_addresses: bool = False
    internal_traffic_policy: str = ""
    external_traffic_policy: str = ""


class Service(_Model, frozen=True):
    metadata: ObjectMeta = ObjectMeta()
    spec: ServiceSpec = ServiceSpec()


class ObjectReference(_Model, frozen=True):
    kind: str = ""
    namespace: str = ""
    name: str = ""
    uid: str = ""


class EndpointConditions(_Model, frozen=True):
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class Endpoint(_Model, frozen=True):
    addresses: tuple[str, ...] = ()
    conditions: EndpointConditions = EndpointConditions()
    hostname: str = ""
    node_name: str = ""
    target_ref: ObjectReference | None = None


class EndpointPort(_Model, frozen=True):
    name: str = ""
    protocol: str = "TCP"
    port: int = 0


class EndpointSlice(_Model, frozen=True):
    metadata: ObjectMeta = ObjectMeta()
    address_type: str = ""
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[EndpointPort, ...] = ()

    @property
    def service_name(self) -> str:
        return self.metadata.labels.get("kubernetes.io/service-name", "")


# ---- Pod -----------------------------------------------------------------------------------------


class ContainerPort(_Model, frozen=True):
    name: str = ""
    container_port: int = 0
    protocol: str = "TCP"
    host_port: int = 0


class ResourceRequirements(_Model, frozen=True):
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}


class Container(_Model, frozen=True):
    name: str = ""
    image: str = ""
    ports: tuple[ContainerPort, ...] = ()
    resources: ResourceRequirements = ResourceRequirements()


class PodSpec(_Model, frozen=True):
    node_name: str = ""
    hostname: str = ""
    subdomain: str = ""
    scheduler_name: str = ""
    priority: int = 0
    host_network: bool = False
    restart_policy: str = "Always"
    containers: tuple[Container, ...] = ()
    init_containers: tuple[Container, ...] = ()
    node_selector: dict[str, str] = {}


class PodIP(_Model, frozen=True):
    ip: str = ""


class PodStatus(_Model, frozen=True):
    phase: str = ""
    pod_ip: str = msgspec.field(default="", name="podIP")
    pod_ips: tuple[PodIP, ...] = msgspec.field(default=(), name="podIPs")
    host_ip: str = msgspec.field(default="", name="hostIP")
    conditions: tuple[Condition, ...] = ()
    nominated_node_name: str = ""


class Pod(_Model, frozen=True):
    metadata: ObjectMeta = ObjectMeta()
    spec: PodSpec = PodSpec()
    status: PodStatus = PodStatus()

    def ready(self) -> bool:
        return any(c.type == "Ready" and c.status == "True" for c in self.status.conditions)


__all__ = [
    "Condition",
    "Container",
    "ContainerPort",
    "Endpoint",
    "EndpointConditions",
    "EndpointPort",
    "EndpointSlice",
    "Lease",
    "LeaseSpec",
    "Node",
    "NodeAddress",
    "NodeSpec",
    "NodeStatus",
    "ObjectMeta",
    "ObjectReference",
    "OwnerReference",
    "Pod",
    "PodSpec",
    "PodStatus",
    "Service",
    "ServicePort",
    "ServiceSpec",
    "Taint",
]
