"""Validation of the cluster and configuration kinds: Service, Namespace, Node, ConfigMap, Secret, Endpoints,
EndpointSlice, Lease, Event, NetworkPolicy and APIService.

Role: Kubernetes' ``pkg/apis/core/validation`` (and networking, discovery, coordination,
kube-aggregator) checks for these kinds, with their field paths and wording, kept apart from
``validation.py`` to keep modules small. ``validation`` merges ``KINDS`` into its own table at
import time (so import ``validation``, not this).

Pure; collects every error it finds (``_Errors``) rather than stopping at the first.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from controlplane.api.selectors import qualified_name_errors
from controlplane.api.validation import (
    _CONFIG_KEY,
    _PROTOCOLS,
    _TAINT_EFFECTS,
    CONFIGMAP_SIZE_LIMIT,
    NODE_PORT_RANGE,
    _Errors,
    _iana_svc_name_errors,
    _label_selector,
    _port_in_range,
    _show,
    _validate_labels,
    dns1035_label_errors,
    dns1123_label_errors,
    dns1123_subdomain_errors,
)

_SERVICE_TYPES = ("ClusterIP", "ExternalName", "LoadBalancer", "NodePort")


def _service(e: _Errors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        e.required("spec")
        return
    stype = spec.get("type") or "ClusterIP"
    if stype not in _SERVICE_TYPES:
        e.not_supported("spec.type", stype, _SERVICE_TYPES)
    e.enum(spec, "sessionAffinity", "spec.sessionAffinity", ("ClientIP", "None"))
    e.enum(spec, "externalTrafficPolicy", "spec.externalTrafficPolicy", ("Cluster", "Local"))
    e.enum(spec, "internalTrafficPolicy", "spec.internalTrafficPolicy", ("Cluster", "Local"))
    cluster_ip = e.str_at(spec, "clusterIP", "spec.clusterIP")
    headless = cluster_ip == "None"
    if cluster_ip and not headless:
        try:
            ipaddress.ip_address(cluster_ip)
        except ValueError:
            e.invalid("spec.clusterIP", cluster_ip, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
    if stype == "ExternalName":
        ext = e.str_at(spec, "externalName", "spec.externalName")
        if not ext:
            e.required("spec.externalName")
        else:
            for msg in dns1123_subdomain_errors(ext.rstrip(".")):
                e.invalid("spec.externalName", ext, msg)
    ports = e.list_at(spec, "ports", "spec.ports")
    if not ports and stype != "ExternalName" and not headless:
        e.required("spec.ports")
    names: set[str] = set()
    seen: set[tuple[Any, Any]] = set()
    node_ports: set[tuple[Any, Any]] = set()
    for i, p in enumerate(ports):
        pp = f"spec.ports[{i}]"
        if not isinstance(p, dict):
            e.invalid(pp, p, "must be an object")
            continue
        pname = p.get("name")
        if len(ports) > 1 and not pname:
            e.required(f"{pp}.name")
        elif pname:
            if not isinstance(pname, str):
                e.invalid(f"{pp}.name", pname, "must be a string")
            else:
                for msg in dns1123_label_errors(pname):
                    e.invalid(f"{pp}.name", pname, msg)
                if pname in names:
                    e.duplicate(f"{pp}.name", pname)
                names.add(pname)
        if p.get("port") is None:
            e.required(f"{pp}.port")
        else:
            _port_in_range(e, f"{pp}.port", p["port"])
        e.enum(p, "protocol", f"{pp}.protocol", _PROTOCOLS, required=True)
        key = (_show(p.get("port")), _show(p.get("protocol")))  # values may be any JSON: compare as text
        if key in seen:
            e.duplicate(pp, {"port": p.get("port"), "protocol": p.get("protocol")})
        seen.add(key)
        tp = p.get("targetPort")
        if isinstance(tp, str) and not tp.isdigit():
            for msg in _iana_svc_name_errors(tp):
                e.invalid(f"{pp}.targetPort", tp, msg)
        elif tp is not None:
            _port_in_range(e, f"{pp}.targetPort", int(tp) if isinstance(tp, str) else tp)
        np = p.get("nodePort")
        if np not in (None, 0):
            if stype not in ("NodePort", "LoadBalancer"):
                e.forbidden(f"{pp}.nodePort", f"may not be used when `type` is '{stype}'")
            elif isinstance(np, bool) or not isinstance(np, int):
                e.invalid(f"{pp}.nodePort", np, "must be an integer")
            elif not NODE_PORT_RANGE[0] <= np <= NODE_PORT_RANGE[1]:
                e.invalid(
                    f"{pp}.nodePort",
                    np,
                    "provided port is not in the valid range. The range of valid ports is "
                    f"{NODE_PORT_RANGE[0]}-{NODE_PORT_RANGE[1]}",
                )
            elif (np, _show(p.get("protocol"))) in node_ports:
                e.duplicate(f"{pp}.nodePort", np)
            node_ports.add((np, _show(p.get("protocol"))))
    selector = spec.get("selector")
    if selector is not None:
        _validate_labels(e, selector, "spec.selector")
    if old is not None and isinstance(old.get("spec"), dict):
        old_ip = old["spec"].get("clusterIP")
        if old_ip and cluster_ip and cluster_ip != old_ip and "ExternalName" not in (stype, old["spec"].get("type")):
            e.immutable("spec.clusterIP", cluster_ip)


def _namespace(e: _Errors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    for i, f in enumerate(e.list_at(spec, "finalizers", "spec.finalizers")):
        if not isinstance(f, str) or qualified_name_errors(f):
            e.invalid(f"spec.finalizers[{i}]", f, "name is neither a standard finalizer name nor is it fully qualified")


def _node(e: _Errors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    assert isinstance(spec, dict)
    cidrs: list[Any] = list(e.list_at(spec, "podCIDRs", "spec.podCIDRs"))
    if spec.get("podCIDR"):
        cidrs = [spec["podCIDR"], *[c for c in cidrs if c != spec["podCIDR"]]]
    for i, c in enumerate(cidrs):
        try:
            ipaddress.ip_network(str(c), strict=True)
        except ValueError:
            e.invalid(f"spec.podCIDRs[{i}]", c, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")
    for i, t in enumerate(e.list_at(spec, "taints", "spec.taints")):
        if not isinstance(t, dict):
            e.invalid(f"spec.taints[{i}]", t, "must be an object")
            continue
        if not t.get("key"):
            e.required(f"spec.taints[{i}].key")
        e.enum(t, "effect", f"spec.taints[{i}].effect", _TAINT_EFFECTS, required=True)
    if old is not None and isinstance(old.get("spec"), dict):
        ospec = old["spec"]
        for key in ("podCIDR", "podCIDRs"):
            if ospec.get(key) and spec.get(key) != ospec.get(key):
                e.forbidden(f"spec.{key}", 'node updates may not change podCIDR except from "" to valid')


def _data_keys(e: _Errors, obj: Mapping[str, Any], keys: tuple[str, ...], base64_values: tuple[str, ...] = ()) -> None:
    seen: set[str] = set()
    total = 0
    for field_name in keys:
        data = e.map_at(obj, field_name, field_name)
        for k, v in data.items():
            p = f"{field_name}[{k}]"
            if len(k) > 253:
                e.invalid(p, k, "must be no more than 253 characters")
            elif not _CONFIG_KEY.match(k):
                e.invalid(
                    p,
                    k,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  "
                    "or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                )
            if k in seen:
                e.invalid(p, k, "duplicate of key present in other data fields")
            seen.add(k)
            if not isinstance(v, str):
                e.invalid(p, v, "must be a string")
                continue
            total += len(v)
            if field_name in base64_values:
                try:
                    base64.b64decode(v, validate=True)
                except ValueError:
                    e.invalid(p, "<value omitted>", "must be base64-encoded")
    if total > CONFIGMAP_SIZE_LIMIT:
        e.too_long("data", CONFIGMAP_SIZE_LIMIT)


def _immutable_data(e: _Errors, obj: Mapping[str, Any], old: Mapping[str, Any] | None, keys: tuple[str, ...]) -> None:
    if old is None or old.get("immutable") is not True:
        return
    if obj.get("immutable") is not True:
        e.forbidden("immutable", "field is immutable when `immutable` is set")
    for k in keys:
        if (obj.get(k) or {}) != (old.get(k) or {}):
            e.forbidden(k, "field is immutable when `immutable` is set")


def _configmap(e: _Errors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    _data_keys(e, obj, ("data", "binaryData"), ("binaryData",))
    _immutable_data(e, obj, old, ("data", "binaryData"))


def _secret(e: _Errors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    _data_keys(e, obj, ("data", "stringData"), ("data",))
    _immutable_data(e, obj, old, ("data",))
    if old is not None and old.get("type") and obj.get("type") != old.get("type"):
        e.immutable("type", obj.get("type"))


def _endpoints(e: _Errors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    for i, subset in enumerate(e.list_at(obj, "subsets", "subsets")):
        sp = f"subsets[{i}]"
        if not isinstance(subset, dict):
            e.invalid(sp, subset, "must be an object")
            continue
        for key in ("addresses", "notReadyAddresses"):
            for j, a in enumerate(e.list_at(subset, key, f"{sp}.{key}")):
                ip = a.get("ip") if isinstance(a, dict) else None
                try:
                    ipaddress.ip_address(str(ip))
                except ValueError:
                    e.invalid(f"{sp}.{key}[{j}].ip", ip, "must be a valid IP address")
        for j, p in enumerate(e.list_at(subset, "ports", f"{sp}.ports")):
            if not isinstance(p, dict):
                continue
            _port_in_range(e, f"{sp}.ports[{j}].port", p.get("port"))
            e.enum(p, "protocol", f"{sp}.ports[{j}].protocol", _PROTOCOLS)


def _endpointslice(e: _Errors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    at = obj.get("addressType")
    if not at:
        e.required("addressType")
    elif at not in ("IPv4", "IPv6", "FQDN"):
        e.not_supported("addressType", at, ("FQDN", "IPv4", "IPv6"))
    for i, ep in enumerate(e.list_at(obj, "endpoints", "endpoints")):
        if not isinstance(ep, dict):
            e.invalid(f"endpoints[{i}]", ep, "must be an object")
            continue
        addrs = e.list_at(ep, "addresses", f"endpoints[{i}].addresses")
        if not addrs:
            e.required(f"endpoints[{i}].addresses")
        elif len(addrs) > 100:
            e.invalid(f"endpoints[{i}].addresses", len(addrs), "must have at most 100 items")
        for j, a in enumerate(addrs):
            if at in ("IPv4", "IPv6"):
                try:
                    ip = ipaddress.ip_address(str(a))
                    if (ip.version == 4) != (at == "IPv4"):
                        raise ValueError
                except ValueError:
                    e.invalid(f"endpoints[{i}].addresses[{j}]", a, f"must be a valid {at} address")
    for i, p in enumerate(e.list_at(obj, "ports", "ports")):
        if not isinstance(p, dict):
            continue
        if p.get("port") is not None:
            _port_in_range(e, f"ports[{i}].port", p["port"], lo=0)
        e.enum(p, "protocol", f"ports[{i}].protocol", _PROTOCOLS)
    if old is not None and old.get("addressType") and at != old.get("addressType"):
        e.immutable("addressType", at)


def _lease(e: _Errors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = e.map_at(obj, "spec", "spec")
    ld = e.int_at(spec, "leaseDurationSeconds", "spec.leaseDurationSeconds")
    if ld is not None and ld <= 0:
        e.invalid("spec.leaseDurationSeconds", ld, "must be greater than 0")
    e.nonnegative(spec, "leaseTransitions", "spec.leaseTransitions")


def _event(e: _Errors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    io = obj.get("involvedObject")
    if io is not None and not isinstance(io, dict):
        e.invalid("involvedObject", io, "must be an object")
    e.enum(obj, "type", "type", ("Normal", "Warning"))


def _ip_block(e: _Errors, block: Any, path: str) -> None:
    if not isinstance(block, dict):
        e.invalid(path, block, "must be an object")
        return
    cidr = block.get("cidr")
    if not cidr:
        e.required(f"{path}.cidr")
        return
    try:
        net = ipaddress.ip_network(str(cidr), strict=False)
    except ValueError:
        e.invalid(f"{path}.cidr", cidr, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")
        return
    for i, ex in enumerate(e.list_at(block, "except", f"{path}.except")):
        try:
            exn = ipaddress.ip_network(str(ex), strict=False)
        except ValueError:
            e.invalid(f"{path}.except[{i}]", ex, "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)")
            continue
        if exn.version != net.version or not exn.subnet_of(net) or exn.prefixlen <= net.prefixlen:  # type: ignore[arg-type]
            e.invalid(f"{path}.except[{i}]", ex, "must be a strict subset of `cidr`")


def _np_peer(e: _Errors, peer: Any, path: str) -> None:
    if not isinstance(peer, dict):
        e.invalid(path, peer, "must be an object")
        return
    n = 0
    for key in ("podSelector", "namespaceSelector"):
        if peer.get(key) is not None:
            n += 1
            _label_selector(e, peer[key], f"{path}.{key}")
    if peer.get("ipBlock") is not None:
        n += 1
        _ip_block(e, peer["ipBlock"], f"{path}.ipBlock")
    if n == 0:
        e.required(path, "must specify a peer")
    elif n > 1 and peer.get("ipBlock") is not None:
        e.forbidden(path, "may not specify both ipBlock and another peer")


def _np_port(e: _Errors, p: Any, path: str) -> None:
    if not isinstance(p, dict):
        e.invalid(path, p, "must be an object")
        return
    e.enum(p, "protocol", f"{path}.protocol", _PROTOCOLS)
    port, end = p.get("port"), p.get("endPort")
    if end is not None:
        if port is None:
            e.required(f"{path}.port", "when endPort is specified")
        elif isinstance(port, str):
            e.forbidden(f"{path}.endPort", "may not be specified when `port` is non-numeric")
        elif isinstance(port, int) and isinstance(end, int) and not isinstance(end, bool) and end < port:
            e.invalid(f"{path}.endPort", end, "must be greater than or equal to `port`")
    if port is None:
        return
    if isinstance(port, str):
        for msg in _iana_svc_name_errors(port):
            e.invalid(f"{path}.port", port, msg)
    else:
        _port_in_range(e, f"{path}.port", port)
        if end is not None:
            _port_in_range(e, f"{path}.endPort", end)


def _networkpolicy(e: _Errors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    # ValidateNetworkPolicySpec, with Kubernetes' field paths and wording.
    spec = e.map_at(obj, "spec", "spec")
    if spec.get("podSelector") is not None:
        _label_selector(e, spec["podSelector"], "spec.podSelector")
    for kind, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(e.list_at(spec, kind, f"spec.{kind}")):
            if not isinstance(rule, dict):
                e.invalid(f"spec.{kind}[{i}]", rule, "must be an object")
                continue
            for j, p in enumerate(e.list_at(rule, "ports", f"spec.{kind}[{i}].ports")):
                _np_port(e, p, f"spec.{kind}[{i}].ports[{j}]")
            for j, peer in enumerate(e.list_at(rule, peers, f"spec.{kind}[{i}].{peers}")):
                _np_peer(e, peer, f"spec.{kind}[{i}].{peers}[{j}]")
    types = e.list_at(spec, "policyTypes", "spec.policyTypes")
    for i, t in enumerate(types):
        if t not in ("Ingress", "Egress"):
            e.not_supported(f"spec.policyTypes[{i}]", t, ("Egress", "Ingress"))
    if len(types) > 2:
        e.invalid("spec.policyTypes", types, "may not specify more than two policyTypes")


def _apiservice(e: _Errors, obj: Mapping[str, Any]) -> None:
    # kube-aggregator's ValidateAPIService, with its field paths and wording.
    spec = e.map_at(obj, "spec", "spec")
    group, version = str(spec.get("group") or ""), str(spec.get("version") or "")
    meta = obj.get("metadata")
    name = str(meta.get("name") or "") if isinstance(meta, dict) else ""
    if name and name != f"{version}.{group}":
        e.invalid("metadata.name", name, f'must be `spec.version+"."+spec.group`: "{version}.{group}"')
    if not group and version != "v1":
        e.required("spec.group", "only v1 may have an empty group and it better be legacy kube")
    for msg in dns1123_subdomain_errors(group) if group else []:
        e.invalid("spec.group", group, msg)
    for msg in dns1035_label_errors(version):
        e.invalid("spec.version", version, msg)
    for field, top in (("groupPriorityMinimum", 20000), ("versionPriority", 1000)):
        v = spec.get(field) or 0
        if not isinstance(v, int) or not 0 < v <= top:
            e.invalid(f"spec.{field}", v, f"must be positive and less than {top}")
    svc = spec.get("service")
    if not svc:
        if spec.get("caBundle"):
            size = f"{len(str(spec['caBundle']))} bytes"
            e.invalid("spec.caBundle", size, "local APIServices may not have a caBundle")
        if spec.get("insecureSkipTLSVerify"):
            e.invalid("spec.insecureSkipTLSVerify", True, "local APIServices may not have insecureSkipTLSVerify")
        return
    for f in ("namespace", "name"):
        if not isinstance(svc, dict) or not svc.get(f):
            e.required(f"spec.service.{f}")
    if spec.get("insecureSkipTLSVerify") and spec.get("caBundle"):
        e.invalid("spec.insecureSkipTLSVerify", True, "may not be true if caBundle is present")


KINDS: dict[str, Callable[[_Errors, Mapping[str, Any], Mapping[str, Any] | None], None]] = {
    "services": _service,
    "namespaces": _namespace,
    "nodes": _node,
    "configmaps": _configmap,
    "secrets": _secret,
    "endpoints": _endpoints,
    "endpointslices": _endpointslice,
    "leases": _lease,
    "events": _event,
    "networkpolicies": _networkpolicy,
    "apiservices": lambda e, obj, old: _apiservice(e, obj),
}
