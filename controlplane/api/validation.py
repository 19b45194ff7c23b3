"""Validation of create and update bodies, with Kubernetes' field paths, reasons and wording.

Role: ``validate(resource, obj, old=None) -> list[Cause]``. The API server runs it after
defaulting; a non-empty result becomes a 422 ``Invalid`` whose ``details.causes`` kubectl
prints as ``The Pod "x" is invalid: spec.containers[0].image: Required value``.

What is checked (the parts of kube-apiserver's ``ValidateObjectMeta`` and per-kind
``Validate*`` functions a user meets):
- names: DNS-1123 subdomain for most kinds, DNS-1123 label for namespaces, DNS-1035 label for
  services; ``generateName`` as a prefix; namespace presence by scope;
- labels and annotations syntax, annotation size;
- pods and pod templates: containers (name/image required, unique names, ports 1–65535,
  protocols, pull policies), volumes and mounts, restart/DNS policies, tolerations;
- services: type, ports (unique, ranges, names, targetPort, nodePort 30000–32767), selector,
  clusterIP syntax, ExternalName;
- workloads: selectors required, non-empty and matching the template labels, replicas ≥ 0,
  strategies, template restartPolicy (Always for controllers, Never/OnFailure for Jobs);
- configmaps/secrets keys, endpoints and endpointslices, nodes, leases;
- updates (``old`` given): immutable metadata (uid, creationTimestamp, name, namespace), the pod
  spec except images/activeDeadlineSeconds/tolerations additions/schedulingGates removal,
  service clusterIP (when both set), workload selectors, job selector/template/completions,
  statefulset spec except its mutable fields, node podCIDRs once set, secret type,
  immutable configmaps/secrets.

Invariants: never raises on malformed input — wrong types become ``FieldValueInvalid`` causes;
messages follow apimachinery's ``field.Error`` format (``Required value``, ``Invalid value:
"x": detail``, ``Unsupported value: "x": supported values: "a", "b"``, ``Duplicate value:
"x"``, ``Forbidden: detail``). Pure; thread-safe.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

from controlplane.api import errors, limits, rbac
from controlplane.api.errors import Cause
from controlplane.api.quantity import QUANTITY_FORMAT_MESSAGE, parse_quantity
from controlplane.api.registry import Resource
from controlplane.api.selectors import LabelSelector, label_value_errors, qualified_name_errors

__all__ = [
    "NODE_PORT_RANGE",
    "dns1035_label_errors",
    "dns1123_label_errors",
    "dns1123_subdomain_errors",
    "parse_quantity",
    "validate",
    "validate_or_raise",
]

NODE_PORT_RANGE = (30000, 32767)
TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024
CONFIGMAP_SIZE_LIMIT = 1024 * 1024

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_VAR_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_IANA_SVC_NAME = re.compile(r"^[-a-z0-9]+$")
_PERCENT = re.compile(r"^[0-9]+%$")


def dns1123_label_errors(value: str) -> list[str]:
    msgs = []
    if len(value) > 63:
        msgs.append("must be no more than 63 characters")
    if not _DNS1123_LABEL.match(value):
        msgs.append(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
            "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
            "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
        )
    return msgs


def dns1123_subdomain_errors(value: str) -> list[str]:
    msgs = []
    if len(value) > 253:
        msgs.append("must be no more than 253 characters")
    if not _DNS1123_SUBDOMAIN.match(value):
        msgs.append(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
            "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    return msgs


def dns1035_label_errors(value: str) -> list[str]:
    msgs = []
    if len(value) > 63:
        msgs.append("must be no more than 63 characters")
    if not _DNS1035_LABEL.match(value):
        msgs.append(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
            "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
            "regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
        )
    return msgs


def _iana_svc_name_errors(value: str) -> list[str]:
    msgs = []
    if len(value) > 15:
        msgs.append("must be no more than 15 characters")
    if not _IANA_SVC_NAME.match(value):
        msgs.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        msgs.append("must not contain consecutive hyphens")
    if not re.search(r"[a-z]", value):
        msgs.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        msgs.append("must not begin or end with a hyphen")
    return msgs


def _path_segment_name_errors(value: str) -> list[str]:
    # path.IsValidPathSegmentName (APIService names such as "v1." are no DNS subdomains)
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


_NAME_FNS: dict[str, Callable[[str], list[str]]] = {
    "namespaces": dns1123_label_errors,
    "services": dns1035_label_errors,
    **dict.fromkeys(("roles", "clusterroles", "rolebindings", "clusterrolebindings"), rbac.path_segment_name_errors),
    "apiservices": _path_segment_name_errors,
}


def _show(v: Any) -> str:
    """A value as apimachinery prints it in ``Invalid value: …``, bounded (``limits.show``)."""
    return limits.show(v)


class _Errors:
    """Accumulates causes in apimachinery's ``field.ErrorList`` wording."""

    def __init__(self) -> None:
        self.causes: list[Cause] = []

    def required(self, path: str, detail: str = "") -> None:
        self.causes.append(Cause(path, "Required value" + (f": {detail}" if detail else ""), "FieldValueRequired"))

    def invalid(self, path: str, value: Any, detail: str) -> None:
        self.causes.append(Cause(path, f"Invalid value: {_show(value)}: {detail}", "FieldValueInvalid"))

    def not_supported(self, path: str, value: Any, supported: Iterable[str]) -> None:
        opts = ", ".join(json.dumps(s) for s in supported)
        self.causes.append(
            Cause(path, f"Unsupported value: {_show(value)}: supported values: {opts}", "FieldValueNotSupported")
        )

    def duplicate(self, path: str, value: Any) -> None:
        self.causes.append(Cause(path, f"Duplicate value: {_show(value)}", "FieldValueDuplicate"))

    def forbidden(self, path: str, detail: str) -> None:
        self.causes.append(Cause(path, f"Forbidden: {detail}", "FieldValueForbidden"))

    def not_found(self, path: str, value: Any) -> None:
        self.causes.append(Cause(path, f"Not found: {_show(value)}", "FieldValueNotFound"))

    def too_long(self, path: str, limit: int) -> None:
        self.causes.append(Cause(path, f"Too long: must have at most {limit} bytes", "FieldValueTooLong"))

    def immutable(self, path: str, value: Any) -> None:
        self.invalid(path, value, "field is immutable")

    # typed readers: a wrong type is reported once and read as "absent"
    def map_at(self, obj: Mapping[str, Any], key: str, path: str) -> dict[str, Any]:
        v = obj.get(key)
        if v is None:
            return {}
        if not isinstance(v, dict):
            self.invalid(path, v, "must be an object")
            return {}
        return v

    def list_at(self, obj: Mapping[str, Any], key: str, path: str) -> list[Any]:
        v = obj.get(key)
        if v is None:
            return []
        if not isinstance(v, list):
            self.invalid(path, v, "must be a list")
            return []
        return v

    def str_at(self, obj: Mapping[str, Any], key: str, path: str) -> str | None:
        v = obj.get(key)
        if v is None:
            return None
        if not isinstance(v, str):
            self.invalid(path, v, "must be a string")
            return None
        return v

    def int_at(self, obj: Mapping[str, Any], key: str, path: str) -> int | None:
        v = obj.get(key)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            self.invalid(path, v, "must be an integer")
            return None
        return v

    def nonnegative(self, obj: Mapping[str, Any], key: str, path: str) -> int | None:
        v = self.int_at(obj, key, path)
        if v is not None and v < 0:
            self.invalid(path, v, "must be greater than or equal to 0")
        return v

    def quantity(self, path: str, q: Any) -> Decimal | None:
        """A resource quantity that must parse and be ≥ 0 (ValidateResourceQuantityValue); None when it
        does not parse (reported), its amount otherwise (a negative one reported too)."""
        try:
            amount = parse_quantity(q)
        except (ValueError, TypeError):
            self.invalid(path, q, QUANTITY_FORMAT_MESSAGE)
            return None
        if amount < 0:
            self.invalid(path, q, "must be greater than or equal to 0")
        return amount

    def enum(
        self, obj: Mapping[str, Any], key: str, path: str, allowed: tuple[str, ...], required: bool = False
    ) -> None:
        v = obj.get(key)
        if v is None or v == "":
            if required:
                self.required(path)
            return
        if v not in allowed:
            self.not_supported(path, v, allowed)


# --- metadata ------------------------------------------------------------------------------


def _validate_labels(e: _Errors, labels: Any, path: str) -> None:
    if labels is None:
        return
    if not isinstance(labels, dict):
        e.invalid(path, labels, "must be an object of string keys and values")
        return
    for k, v in labels.items():
        for msg in qualified_name_errors(str(k)):
            e.invalid(path, k, msg)
        if not isinstance(v, str):
            e.invalid(f"{path}", v, "label values must be strings")
            continue
        for msg in label_value_errors(v):
            e.invalid(path, v, msg)


def _validate_annotations(e: _Errors, annotations: Any, path: str) -> None:
    if annotations is None:
        return
    if not isinstance(annotations, dict):
        e.invalid(path, annotations, "must be an object of string keys and values")
        return
    total = 0
    for k, v in annotations.items():
        for msg in qualified_name_errors(str(k).lower()):
            e.invalid(path, k, msg)
        if not isinstance(v, str):
            e.invalid(path, v, "annotation values must be strings")
            continue
        total += len(str(k)) + len(v.encode())
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        e.too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT)


def _validate_metadata(e: _Errors, resource: Resource, obj: Mapping[str, Any]) -> None:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        e.required("metadata")
        return
    name_fn = _NAME_FNS.get(resource.plural, dns1123_subdomain_errors)
    name = e.str_at(meta, "name", "metadata.name")
    generate = e.str_at(meta, "generateName", "metadata.generateName")
    if not name:
        if not generate:
            e.required("metadata.name", "name or generateName is required")
    else:
        for msg in name_fn(name):
            e.invalid("metadata.name", name, msg)
    if generate:
        # a prefix: validated with a trailing dash masked, as Kubernetes does
        probe = generate[:-1] + "a" if generate.endswith("-") else generate
        for msg in name_fn(probe):
            e.invalid("metadata.generateName", generate, msg)
    namespace = e.str_at(meta, "namespace", "metadata.namespace")
    if resource.namespaced:
        if not namespace:
            e.required("metadata.namespace")
        else:
            for msg in dns1123_label_errors(namespace):
                e.invalid("metadata.namespace", namespace, msg)
    elif namespace:
        e.forbidden("metadata.namespace", "not allowed on this type")
    _validate_labels(e, meta.get("labels"), "metadata.labels")
    _validate_annotations(e, meta.get("annotations"), "metadata.annotations")
    for i, f in enumerate(e.list_at(meta, "finalizers", "metadata.finalizers")):
        if not isinstance(f, str) or qualified_name_errors(f):
            e.invalid(
                f"metadata.finalizers[{i}]", f, "name is neither a standard finalizer name nor is it fully qualified"
            )
    for i, ref in enumerate(e.list_at(meta, "ownerReferences", "metadata.ownerReferences")):
        p = f"metadata.ownerReferences[{i}]"
        if not isinstance(ref, dict):
            e.invalid(p, ref, "must be an object")
            continue
        for key in ("apiVersion", "kind", "name", "uid"):
            if not ref.get(key):
                e.required(f"{p}.{key}")


def _validate_metadata_update(e: _Errors, new: Mapping[str, Any], old: Mapping[str, Any]) -> None:
    nm = new.get("metadata") if isinstance(new.get("metadata"), dict) else {}
    om = old.get("metadata") if isinstance(old.get("metadata"), dict) else {}
    assert isinstance(nm, dict) and isinstance(om, dict)
    for key in ("name", "namespace", "uid", "creationTimestamp"):
        if om.get(key) and nm.get(key) != om.get(key):
            e.immutable(f"metadata.{key}", nm.get(key))


# --- quantities ----------------------------------------------------------------------------


def _validate_resources(e: _Errors, c: Mapping[str, Any], path: str) -> None:
    res = e.map_at(c, "resources", f"{path}.resources")
    parsed: dict[str, dict[str, Decimal]] = {}
    for kind in ("limits", "requests"):
        values = e.map_at(res, kind, f"{path}.resources.{kind}")
        parsed[kind] = {}
        for name, q in values.items():
            fp = f"{path}.resources.{kind}[{name}]"
            for msg in qualified_name_errors(str(name)):
                e.invalid(fp, name, msg)
            amount = e.quantity(fp, q)
            if amount is not None:
                parsed[kind][str(name)] = amount
    for name, req in parsed["requests"].items():
        lim = parsed["limits"].get(name)
        if lim is not None and req > lim:
            e.invalid(
                f"{path}.resources.requests",
                str(res["requests"][name]),
                f"must be less than or equal to {name} limit of {res['limits'][name]}",
            )


# --- pod spec ------------------------------------------------------------------------------

_PROTOCOLS = ("SCTP", "TCP", "UDP")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_DNS_POLICIES = ("ClusterFirstWithHostNet", "ClusterFirst", "Default", "None")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _port_in_range(e: _Errors, path: str, v: Any, lo: int = 1) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        e.invalid(path, v, "must be an integer")
    elif not lo <= v <= 65535:
        e.invalid(path, v, f"must be between {lo} and 65535, inclusive")


def _validate_container(e: _Errors, c: Any, path: str, volume_names: set[str], names: set[str]) -> None:
    if not isinstance(c, dict):
        e.invalid(path, c, "must be an object")
        return
    name = e.str_at(c, "name", f"{path}.name")
    if not name:
        e.required(f"{path}.name")
    else:
        for msg in dns1123_label_errors(name):
            e.invalid(f"{path}.name", name, msg)
        if name in names:
            e.duplicate(f"{path}.name", name)
        names.add(name)
    image = e.str_at(c, "image", f"{path}.image")
    if not image or not image.strip():
        e.required(f"{path}.image")
    elif image != image.strip():
        e.invalid(f"{path}.image", image, "must not have leading or trailing whitespace")
    e.enum(c, "imagePullPolicy", f"{path}.imagePullPolicy", _PULL_POLICIES)
    e.enum(c, "terminationMessagePolicy", f"{path}.terminationMessagePolicy", ("File", "FallbackToLogsOnError"))
    for key in ("command", "args"):
        for i, a in enumerate(e.list_at(c, key, f"{path}.{key}")):
            if not isinstance(a, str):
                e.invalid(f"{path}.{key}[{i}]", a, "must be a string")
    port_names: set[str] = set()
    for i, p in enumerate(e.list_at(c, "ports", f"{path}.ports")):
        pp = f"{path}.ports[{i}]"
        if not isinstance(p, dict):
            e.invalid(pp, p, "must be an object")
            continue
        if p.get("containerPort") is None:
            e.required(f"{pp}.containerPort")
        else:
            _port_in_range(e, f"{pp}.containerPort", p["containerPort"])
        if p.get("hostPort") not in (None, 0):
            _port_in_range(e, f"{pp}.hostPort", p["hostPort"])
        e.enum(p, "protocol", f"{pp}.protocol", _PROTOCOLS, required=True)
        pname = e.str_at(p, "name", f"{pp}.name")
        if pname:
            for msg in _iana_svc_name_errors(pname):
                e.invalid(f"{pp}.name", pname, msg)
            if pname in port_names:
                e.duplicate(f"{pp}.name", pname)
            port_names.add(pname)
    for i, env in enumerate(e.list_at(c, "env", f"{path}.env")):
        ep = f"{path}.env[{i}]"
        if not isinstance(env, dict):
            e.invalid(ep, env, "must be an object")
            continue
        ename = e.str_at(env, "name", f"{ep}.name")
        if not ename:
            e.required(f"{ep}.name")
        elif not _ENV_VAR_NAME.match(ename):
            e.invalid(
                f"{ep}.name",
                ename,
                "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or "
                "'.', and must not start with a digit",
            )
        if env.get("value") is not None and env.get("valueFrom") is not None:
            e.invalid(f"{ep}.valueFrom", "", "may not be specified when `value` is not empty")
    mount_paths: set[str] = set()
    for i, m in enumerate(e.list_at(c, "volumeMounts", f"{path}.volumeMounts")):
        mp = f"{path}.volumeMounts[{i}]"
        if not isinstance(m, dict):
            e.invalid(mp, m, "must be an object")
            continue
        mname = e.str_at(m, "name", f"{mp}.name")
        if not mname:
            e.required(f"{mp}.name")
        elif mname not in volume_names:
            e.not_found(f"{mp}.name", mname)
        mpath = e.str_at(m, "mountPath", f"{mp}.mountPath")
        if not mpath:
            e.required(f"{mp}.mountPath")
        elif mpath in mount_paths:
            e.invalid(f"{mp}.mountPath", mpath, "must be unique")
        else:
            mount_paths.add(mpath)
    _validate_resources(e, c, path)
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        pr = c.get(probe)
        if isinstance(pr, dict):
            for key in (
                "initialDelaySeconds",
                "timeoutSeconds",
                "periodSeconds",
                "successThreshold",
                "failureThreshold",
            ):
                e.nonnegative(pr, key, f"{path}.{probe}.{key}")
            handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if pr.get(h) is not None]
            if not handlers:
                e.required(f"{path}.{probe}", "must specify a handler type")
            elif len(handlers) > 1:
                e.forbidden(f"{path}.{probe}.{handlers[1]}", "may not specify more than 1 handler type")


def _validate_pod_spec(e: _Errors, spec: Any, path: str) -> None:
    if not isinstance(spec, dict):
        e.required(path)
        return
    volume_names: set[str] = set()
    for i, v in enumerate(e.list_at(spec, "volumes", f"{path}.volumes")):
        vp = f"{path}.volumes[{i}]"
        if not isinstance(v, dict):
            e.invalid(vp, v, "must be an object")
            continue
        vname = e.str_at(v, "name", f"{vp}.name")
        if not vname:
            e.required(f"{vp}.name")
            continue
        for msg in dns1123_label_errors(vname):
            e.invalid(f"{vp}.name", vname, msg)
        if vname in volume_names:
            e.duplicate(f"{vp}.name", vname)
        volume_names.add(vname)
        sources = [k for k in v if k != "name"]
        if len(sources) > 1:
            e.forbidden(f"{vp}.{sources[1]}", "may not specify more than 1 volume type")
    containers = spec.get("containers")
    names: set[str] = set()
    for i, c in enumerate(e.list_at(spec, "initContainers", f"{path}.initContainers")):
        _validate_container(e, c, f"{path}.initContainers[{i}]", volume_names, names)
    if not containers:
        e.required(f"{path}.containers")
    elif not isinstance(containers, list):
        e.invalid(f"{path}.containers", containers, "must be a list")
    else:
        for i, c in enumerate(containers):
            _validate_container(e, c, f"{path}.containers[{i}]", volume_names, names)
    e.enum(spec, "restartPolicy", f"{path}.restartPolicy", _RESTART_POLICIES)
    e.enum(spec, "dnsPolicy", f"{path}.dnsPolicy", _DNS_POLICIES)
    tg = e.int_at(spec, "terminationGracePeriodSeconds", f"{path}.terminationGracePeriodSeconds")
    del tg  # negative values are tolerated (Kubernetes rewrites them to 1)
    ads = e.int_at(spec, "activeDeadlineSeconds", f"{path}.activeDeadlineSeconds")
    if ads is not None and ads <= 0:
        e.invalid(f"{path}.activeDeadlineSeconds", ads, "must be between 1 and 2147483647, inclusive")
    node_name = e.str_at(spec, "nodeName", f"{path}.nodeName")
    if node_name:
        for msg in dns1123_subdomain_errors(node_name):
            e.invalid(f"{path}.nodeName", node_name, msg)
    _validate_labels(e, spec.get("nodeSelector"), f"{path}.nodeSelector")
    for i, t in enumerate(e.list_at(spec, "tolerations", f"{path}.tolerations")):
        tp = f"{path}.tolerations[{i}]"
        if not isinstance(t, dict):
            e.invalid(tp, t, "must be an object")
            continue
        op = t.get("operator") or "Equal"
        if op not in ("Exists", "Equal"):
            e.not_supported(f"{tp}.operator", op, ("Equal", "Exists"))
        if not t.get("key") and op != "Exists":
            e.invalid(
                f"{tp}.operator",
                op,
                'operator must be Exists when `key` is empty, which means "match all values and all keys"',
            )
        if op == "Exists" and t.get("value"):
            e.invalid(f"{tp}.operator", t.get("value"), "value must be empty when `operator` is 'Exists'")
        if t.get("effect"):
            e.enum(t, "effect", f"{tp}.effect", _TAINT_EFFECTS)
        if t.get("tolerationSeconds") is not None and t.get("effect") != "NoExecute":
            e.invalid(f"{tp}.effect", t.get("effect"), "effect must be 'NoExecute' when `tolerationSeconds` is set")


def _validate_template(
    e: _Errors, spec: Mapping[str, Any], path: str, selector: LabelSelector | None, restart_policies: tuple[str, ...]
) -> None:
    tmpl = spec.get("template")
    if not isinstance(tmpl, dict):
        e.required(f"{path}.template")
        return
    tmeta = tmpl.get("metadata") if isinstance(tmpl.get("metadata"), dict) else {}
    assert isinstance(tmeta, dict)
    labels = tmeta.get("labels")
    _validate_labels(e, labels, f"{path}.template.metadata.labels")
    _validate_annotations(e, tmeta.get("annotations"), f"{path}.template.metadata.annotations")
    if selector is not None and not selector.empty:
        lbls = labels if isinstance(labels, dict) else {}
        if not selector.matches({str(k): str(v) for k, v in lbls.items()}):
            e.invalid(f"{path}.template.metadata.labels", lbls, "`selector` does not match template `labels`")
    tspec = tmpl.get("spec")
    _validate_pod_spec(e, tspec, f"{path}.template.spec")
    if isinstance(tspec, dict):
        rp = tspec.get("restartPolicy")
        if rp is None:
            e.required(
                f"{path}.template.spec.restartPolicy", "valid values: " + ", ".join(f'"{p}"' for p in restart_policies)
            )
        elif rp not in restart_policies and rp in _RESTART_POLICIES:
            e.not_supported(f"{path}.template.spec.restartPolicy", rp, restart_policies)


def _selector(e: _Errors, spec: Mapping[str, Any], path: str, kind: str) -> LabelSelector | None:
    raw = spec.get("selector")
    if raw is None:
        e.required(f"{path}.selector")
        return None
    if not isinstance(raw, dict):
        e.invalid(f"{path}.selector", raw, "must be an object")
        return None
    try:
        sel = LabelSelector.from_dict(raw)
    except errors.BadRequest as err:
        e.invalid(f"{path}.selector", raw, err.message)
        return None
    if sel.empty:
        e.invalid(f"{path}.selector", raw, f"empty selector is invalid for {kind}")
    return sel


def _int_or_percent(e: _Errors, obj: Mapping[str, Any], key: str, path: str) -> int | None:
    """Validate an IntOrString like maxSurge; returns its integer or percent value."""
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool):
        e.invalid(path, v, "must be an integer or percentage (e.g '5%')")
        return None
    if isinstance(v, int):
        if v < 0:
            e.invalid(path, v, "must be greater than or equal to 0")
        return v
    if isinstance(v, str) and _PERCENT.match(v):
        pct = int(v[:-1])
        if pct > 100:
            e.invalid(path, v, "must not be greater than 100%")
        return pct
    e.invalid(
        path,
        v,
        "a valid percent string must be a numeric string followed by an ending '%' "
        "(e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
    )
    return None


# --- per kind ------------------------------------------------------------------------------


def _pod(e: _Errors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = obj.get("spec")
    _validate_pod_spec(e, spec, "spec")
    if old is None or not isinstance(spec, dict) or not isinstance(old.get("spec"), dict):
        return
    ospec = old["spec"]
    # Pod updates may change only these (ValidatePodUpdate); everything else must stay.
    new_c = _masked_pod_spec(spec, ospec)
    old_c = _masked_pod_spec(ospec, ospec)
    if new_c != old_c:
        e.forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,"
            "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to "
            "existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
            "previously negative)",
        )
    old_ads, new_ads = ospec.get("activeDeadlineSeconds"), spec.get("activeDeadlineSeconds")
    if old_ads is not None and (new_ads is None or (isinstance(new_ads, int) and new_ads > old_ads)):
        e.invalid("spec.activeDeadlineSeconds", new_ads, "must be less than or equal to previous value")
    old_tols = ospec.get("tolerations") or []
    new_tols = spec.get("tolerations") or []
    if isinstance(old_tols, list) and isinstance(new_tols, list):
        for t in old_tols:
            if t not in new_tols and not (
                isinstance(t, dict)
                and any(
                    isinstance(n, dict)
                    and {k: v for k, v in n.items() if k != "tolerationSeconds"}
                    == {k: v for k, v in t.items() if k != "tolerationSeconds"}
                    for n in new_tols
                )
            ):
                e.forbidden("spec.tolerations", "existing toleration can not be modified except its tolerationSeconds")
                break
    old_gates = ospec.get("schedulingGates") or []
    new_gates = spec.get("schedulingGates") or []
    if isinstance(new_gates, list) and any(g not in old_gates for g in new_gates):
        e.forbidden("spec.schedulingGates", "only deletion is allowed, but found new scheduling gate")


def _masked_pod_spec(spec: Mapping[str, Any], old_spec: Mapping[str, Any]) -> dict[str, Any]:
    """The pod spec with the fields an update may change blanked out."""
    out = {
        k: v
        for k, v in spec.items()
        if k not in ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds", "schedulingGates")
    }
    # nodeName may go from "" to a node only through the binding subresource, which the
    # server applies itself; a plain update that keeps the old one is fine.
    if not old_spec.get("nodeName"):
        out.pop("nodeName", None)
    for key in ("containers", "initContainers"):
        if isinstance(out.get(key), list):
            out[key] = [{k: v for k, v in c.items() if k != "image"} if isinstance(c, dict) else c for c in out[key]]
    return out


def _job(e: _Errors, obj: Mapping[str, Any], old: Mapping[str, Any] | None) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        e.required("spec")
        return
    for key in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        e.nonnegative(spec, key, f"spec.{key}")
    ads = e.int_at(spec, "activeDeadlineSeconds", "spec.activeDeadlineSeconds")
    if ads is not None and ads <= 0:
        e.invalid("spec.activeDeadlineSeconds", ads, "must be greater than 0")
    e.enum(spec, "completionMode", "spec.completionMode", ("NonIndexed", "Indexed"))
    if spec.get("completionMode") == "Indexed" and spec.get("completions") is None:
        e.required("spec.completions", "when completion mode is Indexed")
    sel = _selector(e, spec, "spec", "job") if spec.get("selector") is not None or spec.get("manualSelector") else None
    _validate_template(e, spec, "spec", sel, ("OnFailure", "Never"))
    if old is not None and isinstance(old.get("spec"), dict):
        ospec = old["spec"]
        for key in ("selector", "template", "completions", "completionMode"):
            if key in ospec and spec.get(key) != ospec.get(key):
                e.immutable(f"spec.{key}", spec.get(key))


def _label_selector(e: _Errors, raw: Any, path: str) -> None:
    if not isinstance(raw, dict):
        e.invalid(path, raw, "must be an object")
        return
    try:
        LabelSelector.from_dict(raw)
    except errors.BadRequest as err:
        e.invalid(path, raw, err.message)


_KINDS: dict[str, Callable[[_Errors, Mapping[str, Any], Mapping[str, Any] | None], None]] = {
    "pods": _pod,
    "jobs": _job,
    **rbac.VALIDATORS,
}


def validate(resource: Resource, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[Cause]:
    """All validation errors of ``obj`` (a create when ``old`` is None, else an update of ``old``)."""
    e = _Errors()
    if not isinstance(obj, dict):
        return [Cause("", "Invalid value: the object must be a JSON object", "FieldValueInvalid")]
    _validate_metadata(e, resource, obj)
    if old is not None:
        _validate_metadata_update(e, obj, old)
    check = _KINDS.get(resource.plural)
    if check is not None:
        check(e, obj, old)
    return e.causes


def validate_or_raise(resource: Resource, obj: dict[str, Any], old: dict[str, Any] | None = None) -> None:
    """``validate`` and raise ``errors.Invalid`` (kubectl's ``The Pod "x" is invalid: …``) on failure."""
    causes = validate(resource, obj, old)
    if causes:
        meta = obj.get("metadata") if isinstance(obj, dict) and isinstance(obj.get("metadata"), dict) else {}
        assert isinstance(meta, dict)
        name = str(meta.get("name") or meta.get("generateName") or "")
        raise errors.invalid(resource.kind, name, causes)


# CronJob and ReplicationController checks live in their own module (this one is long); it imports
# the helpers above, so it is imported last.
from controlplane.api import validation_workloads as _workloads  # noqa: E402

_KINDS.update(_workloads.KINDS)
# The policy kinds' checks live in their own module (which reads this one's helpers).
from controlplane.api.validation_policy import KINDS as _POLICY_KINDS  # noqa: E402

_KINDS.update(_POLICY_KINDS)
# Services, Namespaces, Nodes, ConfigMaps, Secrets, Endpoints, EndpointSlices, Leases, Events,
# NetworkPolicies and APIServices: their own module too (same pattern).
from controlplane.api.validation_cluster import KINDS as _CLUSTER_KINDS  # noqa: E402

_KINDS.update(_CLUSTER_KINDS)
