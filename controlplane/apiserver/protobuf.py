"""Decode the Kubernetes protobuf encoding of the objects kubectl's typed clients send.

Role: ``kubectl create namespace|configmap|secret|deployment|service|serviceaccount|job|cronjob`` and
``kubectl drain`` (evictions) POST ``application/vnd.kubernetes.protobuf`` bodies (measured with
kubectl 1.33), while everything else kubelab sees is JSON. This module turns such a body into the
same JSON-shaped dict that kubectl would have sent as JSON, so the rest of the server never sees
protobuf. Answers stay JSON (kubectl accepts them: its Accept lists ``application/json`` too).

Wire format: the 4 magic bytes ``k8s\\x00``, then a ``runtime.Unknown`` message — ``typeMeta`` (1:
apiVersion 1, kind 2), ``raw`` (2: the object's own message), ``contentEncoding`` (3),
``contentType`` (4). Objects are gogo-protobuf messages whose field numbers come from the
``generated.proto`` files of k8s.io/api; ``SCHEMAS`` below lists the messages (and only the fields)
that those kubectl commands produce, by field number.

Invariants: gogo encodes zero values of non-pointer fields (``generateName: ""``, ``generation: 0``,
empty ``resources``); Go's JSON encoding would omit them (``omitempty``), so they are dropped here
too, except for fields marked ``keep`` (pointer fields such as ``replicas``, where 0 means 0).
A field number that is not in the schema is skipped; a kind without a schema, or a body that is not
valid protobuf, is a 415/400 naming what is wrong.

Concurrency: pure functions.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from controlplane.api import errors, protowire
from controlplane.api.protowire import Malformed

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"

# field spec: (json name, type, repeated, keep zero). Types: "string", "bytes" (base64 in JSON),
# "int", "bool", "time", "intorstr", "quantity", "map:string", "map:bytes", "map:quantity", or a
# message name from SCHEMAS.
F = tuple[str, str, bool, bool]


def _f(name: str, type_: str, repeated: bool = False, keep: bool = False) -> F:
    return (name, type_, repeated, keep)


SCHEMAS: dict[str, dict[int, F]] = {
    "ObjectMeta": {
        1: _f("name", "string"),
        2: _f("generateName", "string"),
        3: _f("namespace", "string"),
        5: _f("uid", "string"),
        6: _f("resourceVersion", "string"),
        7: _f("generation", "int"),
        10: _f("deletionGracePeriodSeconds", "int", keep=True),
        11: _f("labels", "map:string"),
        12: _f("annotations", "map:string"),
        13: _f("ownerReferences", "OwnerReference", repeated=True),
        14: _f("finalizers", "string", repeated=True),
    },
    "OwnerReference": {
        1: _f("kind", "string"),
        3: _f("name", "string"),
        4: _f("uid", "string"),
        5: _f("apiVersion", "string"),
        6: _f("controller", "bool", keep=True),
        7: _f("blockOwnerDeletion", "bool", keep=True),
    },
    "LabelSelector": {
        1: _f("matchLabels", "map:string"),
        2: _f("matchExpressions", "LabelSelectorRequirement", repeated=True),
    },
    "LabelSelectorRequirement": {
        1: _f("key", "string"),
        2: _f("operator", "string"),
        3: _f("values", "string", repeated=True),
    },
    "Namespace": {1: _f("metadata", "ObjectMeta"), 2: _f("spec", "NamespaceSpec")},
    "NamespaceSpec": {1: _f("finalizers", "string", repeated=True)},
    "ConfigMap": {
        1: _f("metadata", "ObjectMeta"),
        2: _f("data", "map:string"),
        3: _f("binaryData", "map:bytes"),
        4: _f("immutable", "bool", keep=True),
    },
    "Secret": {
        1: _f("metadata", "ObjectMeta"),
        2: _f("data", "map:bytes"),
        3: _f("type", "string"),
        4: _f("stringData", "map:string"),
        5: _f("immutable", "bool", keep=True),
    },
    "ServiceAccount": {
        1: _f("metadata", "ObjectMeta"),
        2: _f("secrets", "ObjectReference", repeated=True),
        3: _f("imagePullSecrets", "LocalObjectReference", repeated=True),
        4: _f("automountServiceAccountToken", "bool", keep=True),
    },
    "ObjectReference": {
        1: _f("kind", "string"),
        2: _f("namespace", "string"),
        3: _f("name", "string"),
        4: _f("uid", "string"),
        5: _f("apiVersion", "string"),
        6: _f("resourceVersion", "string"),
        7: _f("fieldPath", "string"),
    },
    "LocalObjectReference": {1: _f("name", "string")},
    "Service": {1: _f("metadata", "ObjectMeta"), 2: _f("spec", "ServiceSpec")},
    "ServiceSpec": {
        1: _f("ports", "ServicePort", repeated=True),
        2: _f("selector", "map:string"),
        3: _f("clusterIP", "string"),
        4: _f("type", "string"),
        5: _f("externalIPs", "string", repeated=True),
        7: _f("sessionAffinity", "string"),
        10: _f("externalName", "string"),
        11: _f("externalTrafficPolicy", "string"),
        13: _f("publishNotReadyAddresses", "bool"),
    },
    "ServicePort": {
        1: _f("name", "string"),
        2: _f("protocol", "string"),
        3: _f("port", "int"),
        4: _f("targetPort", "intorstr"),
        5: _f("nodePort", "int"),
        6: _f("appProtocol", "string"),
    },
    "Deployment": {1: _f("metadata", "ObjectMeta"), 2: _f("spec", "DeploymentSpec")},
    "DeploymentSpec": {
        1: _f("replicas", "int", keep=True),
        2: _f("selector", "LabelSelector"),
        3: _f("template", "PodTemplateSpec"),
        4: _f("strategy", "DeploymentStrategy"),
        5: _f("minReadySeconds", "int"),
        6: _f("revisionHistoryLimit", "int", keep=True),
        7: _f("paused", "bool"),
        9: _f("progressDeadlineSeconds", "int", keep=True),
    },
    "DeploymentStrategy": {1: _f("type", "string"), 2: _f("rollingUpdate", "RollingUpdateDeployment")},
    "RollingUpdateDeployment": {1: _f("maxUnavailable", "intorstr"), 2: _f("maxSurge", "intorstr")},
    "Job": {1: _f("metadata", "ObjectMeta"), 2: _f("spec", "JobSpec")},
    "JobSpec": {
        1: _f("parallelism", "int", keep=True),
        2: _f("completions", "int", keep=True),
        3: _f("activeDeadlineSeconds", "int", keep=True),
        4: _f("selector", "LabelSelector"),
        5: _f("manualSelector", "bool", keep=True),
        6: _f("template", "PodTemplateSpec"),
        7: _f("backoffLimit", "int", keep=True),
        8: _f("ttlSecondsAfterFinished", "int", keep=True),
        9: _f("completionMode", "string"),
        10: _f("suspend", "bool", keep=True),
    },
    # batch/v1 generated.proto (``kubectl create cronjob``)
    "CronJob": {1: _f("metadata", "ObjectMeta"), 2: _f("spec", "CronJobSpec")},
    "CronJobSpec": {
        1: _f("schedule", "string"),
        2: _f("startingDeadlineSeconds", "int", keep=True),
        3: _f("concurrencyPolicy", "string"),
        4: _f("suspend", "bool", keep=True),
        5: _f("jobTemplate", "JobTemplateSpec"),
        6: _f("successfulJobsHistoryLimit", "int", keep=True),
        7: _f("failedJobsHistoryLimit", "int", keep=True),
        8: _f("timeZone", "string", keep=True),
    },
    "JobTemplateSpec": {1: _f("metadata", "ObjectMeta"), 2: _f("spec", "JobSpec")},
    "PodTemplateSpec": {1: _f("metadata", "ObjectMeta"), 2: _f("spec", "PodSpec")},
    "PodSpec": {
        2: _f("containers", "Container", repeated=True),
        3: _f("restartPolicy", "string"),
        4: _f("terminationGracePeriodSeconds", "int", keep=True),
        6: _f("dnsPolicy", "string"),
        7: _f("nodeSelector", "map:string"),
        8: _f("serviceAccountName", "string"),
        10: _f("nodeName", "string"),
        11: _f("hostNetwork", "bool"),
        16: _f("hostname", "string"),
        17: _f("subdomain", "string"),
        19: _f("schedulerName", "string"),
        20: _f("initContainers", "Container", repeated=True),
        24: _f("priorityClassName", "string"),
    },
    "Container": {
        1: _f("name", "string"),
        2: _f("image", "string"),
        3: _f("command", "string", repeated=True),
        4: _f("args", "string", repeated=True),
        5: _f("workingDir", "string"),
        6: _f("ports", "ContainerPort", repeated=True),
        7: _f("env", "EnvVar", repeated=True),
        8: _f("resources", "ResourceRequirements"),
        13: _f("terminationMessagePath", "string"),
        14: _f("imagePullPolicy", "string"),
        16: _f("stdin", "bool"),
        17: _f("stdinOnce", "bool"),
        18: _f("tty", "bool"),
        20: _f("terminationMessagePolicy", "string"),
    },
    "ContainerPort": {
        1: _f("name", "string"),
        2: _f("hostPort", "int"),
        3: _f("containerPort", "int", keep=True),
        4: _f("protocol", "string"),
        5: _f("hostIP", "string"),
    },
    "EnvVar": {1: _f("name", "string"), 2: _f("value", "string")},
    "ResourceRequirements": {1: _f("limits", "map:quantity"), 2: _f("requests", "map:quantity")},
    "Eviction": {1: _f("metadata", "ObjectMeta"), 2: _f("deleteOptions", "DeleteOptions")},
    "DeleteOptions": {
        1: _f("gracePeriodSeconds", "int", keep=True),
        2: _f("preconditions", "Preconditions"),
        3: _f("orphanDependents", "bool", keep=True),
        4: _f("propagationPolicy", "string"),
        5: _f("dryRun", "string", repeated=True),
    },
    "Preconditions": {1: _f("uid", "string"), 2: _f("resourceVersion", "string")},
    # authentication/v1 (``kubectl create token``)
    "TokenRequest": {1: _f("metadata", "ObjectMeta"), 2: _f("spec", "TokenRequestSpec")},
    "TokenRequestSpec": {
        1: _f("audiences", "string", repeated=True),
        3: _f("boundObjectRef", "BoundObjectReference"),
        4: _f("expirationSeconds", "int", keep=True),
    },
    "BoundObjectReference": {
        1: _f("kind", "string"),
        2: _f("apiVersion", "string"),
        3: _f("name", "string"),
        4: _f("uid", "string"),
    },
    # rbac.authorization.k8s.io/v1 (kubectl create role|clusterrole|rolebinding|clusterrolebinding)
    "Role": {1: _f("metadata", "ObjectMeta"), 2: _f("rules", "PolicyRule", repeated=True)},
    "ClusterRole": {
        1: _f("metadata", "ObjectMeta"),
        2: _f("rules", "PolicyRule", repeated=True),
        3: _f("aggregationRule", "AggregationRule"),
    },
    "AggregationRule": {1: _f("clusterRoleSelectors", "LabelSelector", repeated=True)},
    "PolicyRule": {
        1: _f("verbs", "string", repeated=True),
        2: _f("apiGroups", "string", repeated=True),
        3: _f("resources", "string", repeated=True),
        4: _f("resourceNames", "string", repeated=True),
        5: _f("nonResourceURLs", "string", repeated=True),
    },
    "RoleBinding": {
        1: _f("metadata", "ObjectMeta"),
        2: _f("subjects", "Subject", repeated=True),
        3: _f("roleRef", "RoleRef"),
    },
    "ClusterRoleBinding": {
        1: _f("metadata", "ObjectMeta"),
        2: _f("subjects", "Subject", repeated=True),
        3: _f("roleRef", "RoleRef"),
    },
    "Subject": {
        1: _f("kind", "string"),
        2: _f("apiGroup", "string"),
        3: _f("name", "string"),
        4: _f("namespace", "string"),
    },
    "RoleRef": {1: _f("apiGroup", "string"), 2: _f("kind", "string"), 3: _f("name", "string")},
    # authorization.k8s.io/v1 and authentication.k8s.io/v1 (kubectl auth can-i | whoami)
    "SelfSubjectAccessReview": {1: _f("metadata", "ObjectMeta"), 2: _f("spec", "SelfSubjectAccessReviewSpec")},
    "SelfSubjectAccessReviewSpec": {
        1: _f("resourceAttributes", "ResourceAttributes"),
        2: _f("nonResourceAttributes", "NonResourceAttributes"),
    },
    "ResourceAttributes": {
        1: _f("namespace", "string"),
        2: _f("verb", "string"),
        3: _f("group", "string"),
        4: _f("version", "string"),
        5: _f("resource", "string"),
        6: _f("subresource", "string"),
        7: _f("name", "string"),
    },
    "NonResourceAttributes": {1: _f("path", "string"), 2: _f("verb", "string")},
    "SelfSubjectRulesReview": {1: _f("metadata", "ObjectMeta"), 2: _f("spec", "SelfSubjectRulesReviewSpec")},
    "SelfSubjectRulesReviewSpec": {1: _f("namespace", "string")},
    "SubjectAccessReview": {1: _f("metadata", "ObjectMeta"), 2: _f("spec", "SubjectAccessReviewSpec")},
    "LocalSubjectAccessReview": {1: _f("metadata", "ObjectMeta"), 2: _f("spec", "SubjectAccessReviewSpec")},
    "SubjectAccessReviewSpec": {
        1: _f("resourceAttributes", "ResourceAttributes"),
        2: _f("nonResourceAttributes", "NonResourceAttributes"),
        3: _f("user", "string"),
        4: _f("groups", "string", repeated=True),
        6: _f("uid", "string"),
    },
    "SelfSubjectReview": {1: _f("metadata", "ObjectMeta")},
    "TokenReview": {1: _f("metadata", "ObjectMeta"), 2: _f("spec", "TokenReviewSpec")},
    "TokenReviewSpec": {1: _f("token", "string"), 2: _f("audiences", "string", repeated=True)},
}


# Kinds a request body may carry (the rest of SCHEMAS are nested messages).
TOP_LEVEL = frozenset(
    {
        "Namespace",
        "ConfigMap",
        "Secret",
        "ServiceAccount",
        "Service",
        "Deployment",
        "Job",
        "CronJob",
        "Eviction",
        "DeleteOptions",
        "TokenRequest",
    }
    | {"Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding", "TokenReview", "SelfSubjectReview"}
    | {"SelfSubjectAccessReview", "SelfSubjectRulesReview", "SubjectAccessReview", "LocalSubjectAccessReview"}
)


def _merge_policy_tables() -> frozenset[str]:
    # The policy kinds' tables live in their own module (ResourceQuota, PDB, PriorityClass, Ingress).
    from controlplane.apiserver import protobuf_policy

    SCHEMAS.update(protobuf_policy.SCHEMAS)
    return protobuf_policy.TOP_LEVEL


def _fields(b: Any) -> list[tuple[int, int, Any]]:
    """An embedded message's fields (``protowire.fields``); a scalar where a message belongs is malformed."""
    if not isinstance(b, bytes):
        raise Malformed("expected an embedded message")
    return protowire.fields(b)


def _signed(v: int) -> int:
    # int32/int64 negative values are 10-byte two's complement varints
    return v - (1 << 64) if v >= 1 << 63 else v


def _str(v: Any) -> str:
    if not isinstance(v, bytes):
        raise Malformed("expected a length-delimited string")
    return v.decode("utf-8")


def _scalar(type_: str, wt: int, v: Any) -> Any:
    if type_ == "string":
        return _str(v)
    if type_ == "bytes":
        return base64.b64encode(v).decode()
    if type_ == "int":
        if wt != 0:
            raise Malformed("expected a varint")
        return _signed(v)
    if type_ == "bool":
        if wt != 0:
            raise Malformed("expected a varint")
        return bool(v)
    if type_ == "time":
        secs = 0
        for num, _wt, val in _fields(v):
            if num == 1:
                secs = _signed(val)
        return datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if type_ == "intorstr":
        kind, ival, sval = 0, 0, ""
        for num, _wt, val in _fields(v):
            if num == 1:
                kind = val
            elif num == 2:
                ival = _signed(val)
            elif num == 3:
                sval = _str(val)
        return sval if kind == 1 else ival
    if type_ == "quantity":
        for num, _wt, val in _fields(v):
            if num == 1:
                return _str(val)
        return "0"
    return decode_message(type_, v)


def _empty(value: Any) -> bool:
    return value in ("", 0, False, None) or (isinstance(value, (dict, list)) and not value)


def decode_message(name: str, data: bytes) -> dict[str, Any]:
    schema = SCHEMAS[name]
    out: dict[str, Any] = {}
    for num, wt, v in _fields(data):
        spec = schema.get(num)
        if spec is None:
            continue
        jname, type_, repeated, keep = spec
        if type_.startswith("map:"):
            key, val = "", None
            for knum, kwt, kv in _fields(v):
                if knum == 1:
                    key = _str(kv)
                elif knum == 2:
                    val = _scalar(type_[4:], kwt, kv)
            out.setdefault(jname, {})[key] = val if val is not None else ""
            continue
        value = _scalar(type_, wt, v)
        if jname == "" and isinstance(value, dict):  # an embedded Go struct, inlined in JSON
            out.update(value)
            continue
        if repeated:
            out.setdefault(jname, []).append(value)
        elif keep or not _empty(value):
            out[jname] = value
    return out


def decode(body: bytes) -> dict[str, Any]:
    """A protobuf request body → the object as a JSON-shaped dict (``apiVersion``/``kind`` set)."""
    if not body.startswith(MAGIC):
        raise errors.BadRequest("the protobuf body does not start with the Kubernetes magic number 'k8s\\x00'")
    try:
        api_version, kind, raw = "", "", b""
        for num, _wt, v in _fields(body[len(MAGIC) :]):
            if num == 1:
                for tnum, _twt, tv in _fields(v):
                    if tnum == 1:
                        api_version = _str(tv)
                    elif tnum == 2:
                        kind = _str(tv)
            elif num == 2:
                raw = v
            elif num == 3 and v:
                raise errors.UnsupportedMediaType(f"protobuf content encoding {_str(v)!r} is not supported")
        if kind not in TOP_LEVEL and kind not in _POLICY_TOP_LEVEL:
            raise errors.UnsupportedMediaType(
                f"kubelab cannot decode {kind or 'this object'} from protobuf; send it as application/json "
                "or application/yaml (for example: kubectl apply -f)"
            )
        obj = decode_message(kind, raw)
    except (Malformed, UnicodeDecodeError, RecursionError) as e:
        raise errors.BadRequest(f"the protobuf body is malformed: {e}") from None
    obj = {"apiVersion": api_version, "kind": kind, **obj}
    if kind == "DeleteOptions":
        obj.pop("apiVersion")
        obj.pop("kind")
    return obj


_POLICY_TOP_LEVEL = _merge_policy_tables()
