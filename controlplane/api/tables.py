"""Server-side printing: ``meta.k8s.io/v1`` Tables with the columns ``kubectl get`` shows.

Role: when a request's Accept asks for ``as=Table``, the API server answers with
``to_table(resource, objs, list_rv=...)``. kubectl prints the cells as given, upper-casing the
column names, showing ``priority: 1`` columns only with ``-o wide``; so every cell here (pod
STATUS such as ``ContainerCreating``/``CrashLoopBackOff``/``Completed``/``Terminating``, RESTARTS
``3 (2m ago)``, service PORT(S) ``80:30080/TCP``, node STATUS ``Ready,SchedulingDisabled``,
AGE ``3m2s``) is computed the way Kubernetes' ``pkg/printers/internalversion`` computes it.

Invariants:
- the first column is always the object's name (``format: "name"``, which gives ``kubectl get
  all`` its ``pod/`` prefixes), except for events, whose name column is last as in Kubernetes;
- every row carries ``object``: ``PartialObjectMetadata`` (default, drives ``-A`` and
  ``--show-labels``), the full object for ``includeObject=Object`` (``--sort-by``), nothing for
  ``None``;
- the Table's ``metadata.resourceVersion`` is the list's, which ``kubectl get -w`` watches from;
- a malformed object never raises: missing fields print as Kubernetes prints zero values.

Pure; ``now`` is a parameter so ages are testable. Thread-safe.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from controlplane.api import errors, rbac
from controlplane.api.meta import parse_time
from controlplane.api.registry import Resource
from controlplane.api.selectors import LabelSelector

__all__ = ["Column", "columns_for", "human_duration", "to_table"]

Obj = Mapping[str, Any]
Cell = str | int


@dataclass(frozen=True)
class Column:
    name: str
    type: str = "string"
    description: str = ""
    priority: int = 0
    format: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        }


NAME_DESC = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources "
    "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
    "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
AGE_DESC = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is not "
    "guaranteed to be set in happens-before order across separate operations. Clients may not set this value. "
    "It is represented in RFC3339 form and is in UTC."
)
_NAME: Column = Column("Name", format="name", description=NAME_DESC)
_AGE: Column = Column("Age", description=AGE_DESC)


def _c(name: str, desc: str = "", *, type_: str = "string", priority: int = 0) -> Column:
    return Column(name, type_, desc, priority)


# --- helpers -------------------------------------------------------------------------------


def human_duration(seconds: float) -> str:
    """apimachinery's ``duration.HumanDuration``: ``5s``, ``3m2s``, ``15m``, ``5h3m``, ``2d5h``, ``3y20d``."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rem = s % 60
        return f"{minutes}m" if rem == 0 else f"{minutes}m{rem}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rem = minutes % 60
        return f"{hours}h" if rem == 0 else f"{hours}h{rem}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        rem = hours % 24
        return f"{hours // 24}d" if rem == 0 else f"{hours // 24}d{rem}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        days = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if days == 0 else f"{hours // 24 // 365}y{days}d"
    return f"{hours // 24 // 365}y"


def _since(ts: Any, now: datetime) -> str:
    """``translateTimestampSince``: ``<unknown>`` for a missing or unparsable time."""
    if not isinstance(ts, str) or not ts:
        return "<unknown>"
    try:
        t = parse_time(ts)
    except errors.BadRequest:
        return "<unknown>"
    return human_duration((now - t).total_seconds())


def _get(obj: Any, *path: str) -> Any:
    cur = obj
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _maps(v: Any) -> list[Mapping[str, Any]]:
    return [x for x in _list(v) if isinstance(x, dict)]


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def _name(obj: Obj) -> str:
    return _str(_get(obj, "metadata", "name"))


def _age(obj: Obj, now: datetime) -> str:
    return _since(_get(obj, "metadata", "creationTimestamp"), now)


def _format_labels(labels: Any) -> str:
    """``labels.FormatLabels``: sorted ``k=v`` pairs, ``<none>`` when empty."""
    if not isinstance(labels, dict) or not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


def _selector_string(sel: Any) -> str:
    if not isinstance(sel, dict):
        return "<none>"
    try:
        return str(LabelSelector.from_dict(sel))
    except errors.BadRequest:
        return "<error>"


def _containers_images(pod_spec: Any) -> tuple[str, str]:
    cs = _maps(_get(pod_spec, "containers"))
    return ",".join(_str(c.get("name")) for c in cs), ",".join(_str(c.get("image")) for c in cs)


# --- pods ----------------------------------------------------------------------------------


def _has_condition(conditions: Any, type_: str, status: str = "True") -> bool:
    return any(c.get("type") == type_ and c.get("status") == status for c in _maps(conditions))


def _is_restartable_init(c: Mapping[str, Any] | None) -> bool:
    return c is not None and c.get("restartPolicy") == "Always"


def pod_status_reason(pod: Obj) -> tuple[str, int, int, int, str | None]:
    """(STATUS, ready, total, restarts, last restart time) as ``printPod`` computes them."""
    spec = _get(pod, "spec") or {}
    status = _get(pod, "status") or {}
    containers = _maps(_get(spec, "containers"))
    init_specs = {_str(c.get("name")): c for c in _maps(_get(spec, "initContainers"))}
    total = len(containers) + sum(1 for c in init_specs.values() if _is_restartable_init(c))
    ready = 0
    restarts = 0
    restartable_init_restarts = 0
    last_restart: str | None = None
    last_restartable_init: str | None = None
    phase = _str(_get(status, "phase"))
    reason = _str(_get(status, "reason")) or phase
    for cond in _maps(_get(status, "conditions")):
        if cond.get("type") == "PodScheduled" and cond.get("reason") == "SchedulingGated":
            reason = "SchedulingGated"

    def later(a: str | None, b: Any) -> str | None:
        if not isinstance(b, str) or not b:
            return a
        return b if a is None or b > a else a

    initializing = False
    init_statuses = _maps(_get(status, "initContainerStatuses"))
    for i, cs in enumerate(init_statuses):
        restarts += _int(cs.get("restartCount"))
        finished = _get(cs, "lastState", "terminated", "finishedAt")
        last_restart = later(last_restart, finished)
        restartable = _is_restartable_init(init_specs.get(_str(cs.get("name"))))
        if restartable:
            restartable_init_restarts += _int(cs.get("restartCount"))
            last_restartable_init = later(last_restartable_init, finished)
        term = _get(cs, "state", "terminated")
        waiting = _get(cs, "state", "waiting")
        if isinstance(term, dict) and _int(term.get("exitCode")) == 0:
            continue
        if restartable and cs.get("started") is True:
            if cs.get("ready") is True:
                ready += 1
            continue
        if isinstance(term, dict):
            if not _str(term.get("reason")):
                if _int(term.get("signal")):
                    reason = f"Init:Signal:{_int(term.get('signal'))}"
                else:
                    reason = f"Init:ExitCode:{_int(term.get('exitCode'))}"
            else:
                reason = "Init:" + _str(term.get("reason"))
        elif isinstance(waiting, dict) and _str(waiting.get("reason")) and waiting.get("reason") != "PodInitializing":
            reason = "Init:" + _str(waiting.get("reason"))
        else:
            reason = f"Init:{i}/{len(init_specs)}"
        initializing = True
        break

    if not initializing or _has_condition(_get(status, "conditions"), "Initialized"):
        restarts = restartable_init_restarts
        last_restart = last_restartable_init
        has_running = False
        for cs in reversed(_maps(_get(status, "containerStatuses"))):
            restarts += _int(cs.get("restartCount"))
            last_restart = later(last_restart, _get(cs, "lastState", "terminated", "finishedAt"))
            waiting = _get(cs, "state", "waiting")
            term = _get(cs, "state", "terminated")
            if isinstance(waiting, dict) and _str(waiting.get("reason")):
                reason = _str(waiting.get("reason"))
            elif isinstance(term, dict) and _str(term.get("reason")):
                reason = _str(term.get("reason"))
            elif isinstance(term, dict):
                if _int(term.get("signal")):
                    reason = f"Signal:{_int(term.get('signal'))}"
                else:
                    reason = f"ExitCode:{_int(term.get('exitCode'))}"
            elif cs.get("ready") is True and isinstance(_get(cs, "state", "running"), dict):
                has_running = True
                ready += 1
        if reason == "Completed" and has_running:
            reason = "Running" if _has_condition(_get(status, "conditions"), "Ready") else "NotReady"

    if _get(pod, "metadata", "deletionTimestamp"):
        if _str(_get(status, "reason")) == "NodeLost":
            reason = "Unknown"
        elif phase not in ("Succeeded", "Failed"):
            reason = "Terminating"
    return reason, ready, total, restarts, last_restart


def _pod_row(pod: Obj, now: datetime) -> list[Cell]:
    reason, ready, total, restarts, last_restart = pod_status_reason(pod)
    restarts_str = str(restarts)
    if restarts and last_restart:
        restarts_str = f"{restarts} ({_since(last_restart, now)} ago)"
    status = _get(pod, "status") or {}
    ips = _maps(_get(status, "podIPs"))
    pod_ip = _str(ips[0].get("ip")) if ips else _str(_get(status, "podIP"))
    gates = _maps(_get(pod, "spec", "readinessGates"))
    gates_str = "<none>"
    if gates:
        conds = {_str(c.get("type")): c.get("status") for c in _maps(_get(status, "conditions"))}
        true_count = sum(1 for g in gates if conds.get(_str(g.get("conditionType"))) == "True")
        gates_str = f"{true_count}/{len(gates)}"
    return [
        _name(pod),
        f"{ready}/{total}",
        reason,
        restarts_str,
        _age(pod, now),
        pod_ip or "<none>",
        _str(_get(pod, "spec", "nodeName")) or "<none>",
        _str(_get(status, "nominatedNodeName")) or "<none>",
        gates_str,
    ]


def _pod_conditions(pod: Obj) -> list[dict[str, str]] | None:
    phase = _get(pod, "status", "phase")
    if phase == "Succeeded":
        return [
            {
                "type": "Completed",
                "status": "True",
                "reason": "Succeeded",
                "message": "The pod has completed successfully.",
            }
        ]
    if phase == "Failed":
        return [{"type": "Completed", "status": "True", "reason": "Failed", "message": "The pod failed."}]
    return None


# --- services ------------------------------------------------------------------------------


def _service_external_ip(svc: Obj) -> str:
    spec = _get(svc, "spec") or {}
    stype = _str(_get(spec, "type")) or "ClusterIP"
    external = [str(x) for x in _list(_get(spec, "externalIPs"))]
    if stype in ("ClusterIP", "NodePort"):
        return ",".join(external) if external else "<none>"
    if stype == "LoadBalancer":
        ingress = _maps(_get(svc, "status", "loadBalancer", "ingress"))
        lb = [_str(i.get("ip")) or _str(i.get("hostname")) for i in ingress]
        lb = [x for x in lb if x] + external
        return ",".join(lb) if lb else "<pending>"
    if stype == "ExternalName":
        return _str(_get(spec, "externalName"))
    return "<unknown>"


def _port_string(ports: Any) -> str:
    parts = []
    for p in _maps(ports):
        proto = _str(p.get("protocol")) or "TCP"
        if _int(p.get("nodePort")):
            parts.append(f"{_int(p.get('port'))}:{_int(p.get('nodePort'))}/{proto}")
        else:
            parts.append(f"{_int(p.get('port'))}/{proto}")
    return ",".join(parts) if parts else "<none>"


def _service_row(svc: Obj, now: datetime) -> list[Cell]:
    spec = _get(svc, "spec") or {}
    return [
        _name(svc),
        _str(_get(spec, "type")) or "ClusterIP",
        _str(_get(spec, "clusterIP")) or "<none>",
        _service_external_ip(svc),
        _port_string(_get(spec, "ports")),
        _age(svc, now),
        _format_labels(_get(spec, "selector")),
    ]


# --- nodes and the rest --------------------------------------------------------------------


def node_roles(node: Obj) -> list[str]:
    """``findNodeRoles``: from ``node-role.kubernetes.io/<role>`` and ``kubernetes.io/role`` labels."""
    roles: set[str] = set()
    labels = _get(node, "metadata", "labels")
    if isinstance(labels, dict):
        for k, v in labels.items():
            if k.startswith("node-role.kubernetes.io/") and k[len("node-role.kubernetes.io/") :]:
                roles.add(k[len("node-role.kubernetes.io/") :])
            elif k == "kubernetes.io/role" and v:
                roles.add(str(v))
    return sorted(roles)


def _node_row(node: Obj, now: datetime) -> list[Cell]:
    status = _get(node, "status") or {}
    states = []
    for c in _maps(_get(status, "conditions")):
        if c.get("type") == "Ready":
            states = ["Ready" if c.get("status") == "True" else "NotReady"]
    if not states:
        states = ["Unknown"]
    if _get(node, "spec", "unschedulable") is True:
        states.append("SchedulingDisabled")
    addrs = _maps(_get(status, "addresses"))
    internal = next((_str(a.get("address")) for a in addrs if a.get("type") == "InternalIP"), "") or "<none>"
    external = next((_str(a.get("address")) for a in addrs if a.get("type") == "ExternalIP"), "") or "<none>"
    info = _get(status, "nodeInfo") or {}
    return [
        _name(node),
        ",".join(states),
        ",".join(node_roles(node)) or "<none>",
        _age(node, now),
        _str(_get(info, "kubeletVersion")),
        internal,
        external,
        _str(_get(info, "osImage")) or "<unknown>",
        _str(_get(info, "kernelVersion")) or "<unknown>",
        _str(_get(info, "containerRuntimeVersion")) or "<unknown>",
    ]


def _namespace_row(ns: Obj, now: datetime) -> list[Cell]:
    return [_name(ns), _str(_get(ns, "status", "phase")), _age(ns, now)]


def _event_source(ev: Obj) -> str:
    component = _str(_get(ev, "source", "component"))
    host = _str(_get(ev, "source", "host"))
    if not component:
        component = _str(ev.get("reportingComponent"))
        host = host or _str(ev.get("reportingInstance"))
    return f"{component}, {host}" if host else component


def _event_row(ev: Obj, now: datetime) -> list[Cell]:
    first = _since(ev.get("firstTimestamp"), now) if ev.get("firstTimestamp") else _since(ev.get("eventTime"), now)
    last = _since(ev.get("lastTimestamp"), now) if ev.get("lastTimestamp") else first
    count = _int(ev.get("count"))
    series = ev.get("series")
    if isinstance(series, dict):
        last = _since(series.get("lastObservedTime"), now)
        count = _int(series.get("count"))
    elif count == 0:
        count = 1
    io = ev.get("involvedObject") or {}
    kind = _str(_get(io, "kind")).lower()
    target = f"{kind}/{_str(_get(io, 'name'))}" if _str(_get(io, "name")) else kind
    return [
        last,
        _str(ev.get("type")),
        _str(ev.get("reason")),
        target,
        _str(_get(io, "fieldPath")),
        _event_source(ev),
        _str(ev.get("message")).strip(),
        first,
        count,
        _name(ev),
    ]


def _more(items: list[str], count: int, limit: int = 3, empty: str = "<unset>") -> str:
    text = ",".join(items[:limit])
    if count > limit:
        return f"{text} + {count - limit} more..."
    return text or empty


def _endpoints_row(ep: Obj, now: datetime) -> list[Cell]:
    subsets = _maps(ep.get("subsets"))
    if not subsets:
        return [_name(ep), "<none>", _age(ep, now)]
    items: list[str] = []
    count = 0
    for ss in subsets:
        addrs = [_str(a.get("ip")) for a in _maps(ss.get("addresses"))]
        ports = _maps(ss.get("ports"))
        if not ports:
            count += len(addrs)
            items.extend(addrs)
            continue
        for p in ports:
            count += len(addrs)
            for ip in addrs:
                host = f"[{ip}]" if ":" in ip else ip
                items.append(f"{host}:{_int(p.get('port'))}")
    return [_name(ep), _more(items, count, empty=""), _age(ep, now)]


def _endpointslice_row(es: Obj, now: datetime) -> list[Cell]:
    ports = []
    for p in _maps(es.get("ports")):
        if isinstance(p.get("port"), int):
            ports.append(str(p["port"]))
        elif _str(p.get("name")):
            ports.append(_str(p.get("name")))
        else:
            ports.append("*")
    addrs = [str(a) for e in _maps(es.get("endpoints")) for a in _list(e.get("addresses"))]
    return [
        _name(es),
        _str(es.get("addressType")),
        _more(ports, len(ports)),
        _more(addrs, len(addrs)),
        _age(es, now),
    ]


def _lease_row(lease: Obj, now: datetime) -> list[Cell]:
    return [_name(lease), _str(_get(lease, "spec", "holderIdentity")), _age(lease, now)]


def _networkpolicy_row(np: Obj, now: datetime) -> list[Cell]:
    sel = _selector_string(_get(np, "spec", "podSelector") or {})
    return [_name(np), sel or "<none>", _age(np, now)]


def _apiservice_row(a: Obj, now: datetime) -> list[Cell]:
    # kube-aggregator's printers: SERVICE is ns/name or "Local"; AVAILABLE "True" or "False (Reason)".
    ref = _get(a, "spec", "service")
    svc = f"{ref.get('namespace', '')}/{ref.get('name', '')}" if ref else "Local"
    cond = next((c for c in _get(a, "status", "conditions") or [] if c.get("type") == "Available"), None)
    avail = "Unknown" if cond is None else cond.get("status", "Unknown")
    if cond is not None and avail != "True":
        avail = f"{avail} ({cond.get('reason', '')})"
    return [_name(a), svc, avail, _age(a, now)]


def _configmap_row(cm: Obj, now: datetime) -> list[Cell]:
    n = len(cm.get("data") or {}) + len(cm.get("binaryData") or {})
    return [_name(cm), n, _age(cm, now)]


def _secret_row(s: Obj, now: datetime) -> list[Cell]:
    return [_name(s), _str(s.get("type")), len(s.get("data") or {}), _age(s, now)]


def _serviceaccount_row(sa: Obj, now: datetime) -> list[Cell]:
    return [_name(sa), len(_list(sa.get("secrets"))), _age(sa, now)]


def _controllerrevision_row(cr: Obj, now: datetime) -> list[Cell]:
    owner = next(
        (o for o in _maps(_get(cr, "metadata", "ownerReferences")) if o.get("controller") is True),
        None,
    )
    controller = "<none>"
    if owner is not None:
        group = _str(owner.get("apiVersion")).rpartition("/")[0]
        kind = _str(owner.get("kind")).lower()
        controller = f"{kind}.{group}/{_str(owner.get('name'))}" if group else f"{kind}/{_str(owner.get('name'))}"
    return [_name(cr), controller, _int(cr.get("revision")), _age(cr, now)]


def _role_row(role: Obj, now: datetime) -> list[Cell]:
    return rbac.role_row(_name(role), role, now)


def _binding_row(binding: Obj, now: datetime) -> list[Cell]:
    ref, users, groups, sas = rbac.binding_cells(binding)
    return [_name(binding), ref, _age(binding, now), users, groups, sas]


def _default_row(obj: Obj, now: datetime) -> list[Cell]:
    return [_name(obj), _age(obj, now)]


_CREATED_AT = Column("Created At", type="date", description=AGE_DESC)
_BINDING_COLUMNS = [
    _NAME,
    _c("Role", "RoleRef is the reference to the role the binding grants."),
    _AGE,
    _c("Users", "Users in the binding", priority=1),
    _c("Groups", "Groups in the binding", priority=1),
    _c("ServiceAccounts", "ServiceAccounts in the binding", priority=1),
]

_PRINTERS: dict[str, tuple[list[Column], Callable[[Obj, datetime], list[Cell]]]] = {
    "pods": (
        [
            _NAME,
            _c("Ready", "The aggregate readiness state of this pod for accepting traffic."),
            _c("Status", "The aggregate status of the containers in this pod."),
            _c(
                "Restarts",
                "The number of times the containers in this pod have been restarted and when the last container "
                "in this pod has restarted.",
            ),
            _AGE,
            _c(
                "IP",
                "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
                priority=1,
            ),
            _c("Node", "NodeName indicates in which node this pod is scheduled.", priority=1),
            _c(
                "Nominated Node",
                "nominatedNodeName is set only when this pod preempts other pods on the node.",
                priority=1,
            ),
            _c("Readiness Gates", "If specified, all readiness gates will be evaluated for pod readiness.", priority=1),
        ],
        _pod_row,
    ),
    "services": (
        [
            _NAME,
            _c("Type", "type determines how the Service is exposed."),
            _c("Cluster-IP", "clusterIP is the IP address of the service."),
            _c(
                "External-IP",
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic "
                "for this service.",
            ),
            _c("Port(s)", "The list of ports that are exposed by this service."),
            _AGE,
            _c(
                "Selector",
                "Route service traffic to pods with label keys and values matching this selector.",
                priority=1,
            ),
        ],
        _service_row,
    ),
    "nodes": (
        [
            _NAME,
            _c("Status", "The status of the node"),
            _c("Roles", "The roles of the node"),
            _AGE,
            _c("Version", "Kubelet Version reported by the node."),
            _c("Internal-IP", "List of addresses reachable to the node.", priority=1),
            _c("External-IP", "List of addresses reachable to the node.", priority=1),
            _c(
                "OS-Image",
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
                priority=1,
            ),
            _c(
                "Kernel-Version",
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
                priority=1,
            ),
            _c(
                "Container-Runtime",
                "Container runtime version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
                priority=1,
            ),
        ],
        _node_row,
    ),
    "namespaces": (
        [_NAME, _c("Status", "The status of the namespace"), _AGE],
        _namespace_row,
    ),
    "events": (
        [
            _c("Last Seen", "The time at which the most recent occurrence of this event was recorded."),
            _c("Type", "Type of this event (Normal, Warning), new types could be added in the future"),
            _c(
                "Reason",
                "This should be a short, machine understandable string that gives the reason for the transition "
                "into the object's current status.",
            ),
            _c("Object", "The object that this event is about."),
            _c("Subobject", "The specific part of the object this event is about.", priority=1),
            _c("Source", "The component reporting this event.", priority=1),
            _c("Message", "A human-readable description of the status of this operation."),
            _c("First Seen", "The time at which the event was first recorded.", priority=1),
            _c("Count", "The number of times this event has occurred.", priority=1),
            Column("Name", "string", NAME_DESC, 1, "name"),
        ],
        _event_row,
    ),
    "endpoints": ([_NAME, _c("Endpoints", "Endpoints of the service"), _AGE], _endpoints_row),
    "endpointslices": (
        [
            _NAME,
            _c("AddressType", "addressType specifies the type of address carried by this EndpointSlice."),
            _c("Ports", "ports specifies the list of network ports exposed by each endpoint in this slice."),
            _c("Endpoints", "endpoints is a list of unique endpoints in this slice."),
            _AGE,
        ],
        _endpointslice_row,
    ),
    "leases": ([_NAME, _c("Holder", "The holder of the lease"), _AGE], _lease_row),
    "networkpolicies": (
        [_NAME, _c("Pod-Selector", "A label selector is a label query over a set of resources."), _AGE],
        _networkpolicy_row,
    ),
    "apiservices": (
        [
            _NAME,
            _c("Service", "The reference to the service that hosts this API endpoint."),
            _c("Available", "Whether this service is available."),
            _AGE,
        ],
        _apiservice_row,
    ),
    "configmaps": ([_NAME, _c("Data", "Number of keys in the config map", type_="integer"), _AGE], _configmap_row),
    "secrets": (
        [
            _NAME,
            _c("Type", "The type of the secret"),
            _c("Data", "Number of keys in the secret", type_="integer"),
            _AGE,
        ],
        _secret_row,
    ),
    "serviceaccounts": (
        [_NAME, _c("Secrets", "Number of secrets in the service account", type_="integer"), _AGE],
        _serviceaccount_row,
    ),
    "controllerrevisions": (
        [
            _NAME,
            _c("Controller", "Controller of the object"),
            _c("Revision", "Revision indicates the revision of the state represented by Data.", type_="integer"),
            _AGE,
        ],
        _controllerrevision_row,
    ),
    # pkg/printers/internalversion/printers.go: roleColumnDefinitions, roleBindingsColumnDefinitions
    "roles": ([_NAME, _CREATED_AT], _role_row),
    "clusterroles": ([_NAME, _CREATED_AT], _role_row),
    "rolebindings": (_BINDING_COLUMNS, _binding_row),
    "clusterrolebindings": (_BINDING_COLUMNS, _binding_row),
}


def columns_for(resource: Resource) -> list[Column]:
    return _PRINTERS.get(resource.plural, ([_NAME, _AGE], _default_row))[0]


def _row_object(resource: Resource, obj: Obj, include_object: str) -> dict[str, Any] | None:
    if include_object == "None":
        return None
    if include_object == "Object":
        full = dict(obj)
        full.setdefault("apiVersion", resource.api_version)
        full.setdefault("kind", resource.kind)
        return full
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": dict(md) if isinstance(md := obj.get("metadata"), dict) else {},
    }


def to_table(
    resource: Resource,
    objs: list[dict[str, Any]],
    *,
    list_rv: str,
    include_object: str = "Metadata",
    now: datetime | None = None,
    include_column_definitions: bool = True,
) -> dict[str, Any]:
    """A ``meta.k8s.io/v1`` Table of ``objs`` (one row each, in order)."""
    if include_object not in ("None", "Metadata", "Object"):
        raise errors.BadRequest(
            f'invalid includeObject "{include_object}": supported values: "None", "Metadata", "Object"'
        )
    moment = now or datetime.now(UTC)
    columns, printer = _PRINTERS.get(resource.plural, ([_NAME, _AGE], _default_row))
    rows: list[dict[str, Any]] = []
    for obj in objs:
        row: dict[str, Any] = {"cells": printer(obj, moment)}
        if resource.plural == "pods":
            conds = _pod_conditions(obj)
            if conds:
                row["conditions"] = conds
        row["object"] = _row_object(resource, obj, include_object)
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": list_rv},
        "columnDefinitions": [c.to_dict() for c in columns] if include_column_definitions else [],
        "rows": rows,
    }


# The workload and policy kinds' printers live in their own modules (which read this one's helpers).
from controlplane.api.tables_policy import PRINTERS as _POLICY_PRINTERS  # noqa: E402
from controlplane.api.tables_workloads import PRINTERS as _WORKLOAD_PRINTERS  # noqa: E402

_PRINTERS.update(_WORKLOAD_PRINTERS)
_PRINTERS.update(_POLICY_PRINTERS)
