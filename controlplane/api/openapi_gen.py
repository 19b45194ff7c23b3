"""Development-time generator of ``openapi_schemas.json`` (run: ``python -m controlplane.api.openapi_gen``).

Role: build OpenAPI v3 component schemas for every kind kubelab serves, and every type they
reference, from the official ``kubernetes`` Python client's models (a test extra, so this
runs at development time only; the output JSON is committed and is all ``openapi.py`` reads at
runtime). Each model class carries ``openapi_types`` (attribute → type string such as
``List[V1Container]``), ``attribute_map`` (attribute → JSON name) and pydantic ``model_fields``
(descriptions, required-ness).

Invariants of the output:
- schema names are Kubernetes' own (``io.k8s.api.core.v1.PodSpec``,
  ``io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta``), so ``kubectl explain`` prints familiar
  type names;
- struct-valued properties are ``{"allOf": [{"$ref": …}], "default": {}}`` exactly as
  kube-apiserver's v3 documents write them (the form kubectl's v3 readers expect); pointer
  fields (``openapi_markers.json``) carry no ``default``, as in kube-openapi;
- the markers of the Go types that the client models drop come from ``openapi_markers.json``
  (extracted from k8s.io/api by ``openapi_markers_extract``): ``x-kubernetes-list-type``,
  ``x-kubernetes-list-map-keys`` and ``x-kubernetes-map-type`` (fields and atomic structs), and
  every ``+enum`` string as ``enum`` with kube-openapi's ``Possible enum values:`` lines appended
  to the description (what ``kubectl explain`` shows, v2 and v3). Server-side apply
  (``managedfields``) reads the list and map types back from these schemas;
- lists with a strategic-merge strategy carry ``x-kubernetes-patch-strategy`` /
  ``x-kubernetes-patch-merge-key`` taken from ``patch.STRATEGY`` (one source of truth with the
  server's patcher), plus ``conditions`` lists of status types (merge by ``type``);
- top-level kinds carry ``x-kubernetes-group-version-kind``;
- integers are ``format: int32`` unless the Go field is an ``int64`` (``_INT64``: the client models
  say only ``int``), ``resource.Quantity`` strings carry ``format: quantity`` (``_QUANTITY``: they
  decode from a JSON string *or number*), and the string enums that kube-apiserver's validation
  enforces carry ``enum`` (``_ENUMS``, a fallback: the Go ``+enum`` markers above give these and
  every other enum, with their descriptions). ``controlplane.api.structural`` checks every write against
  these types, so the tables are the Go types of ``k8s.io/api`` (``core/v1/types.go``,
  ``apps/v1/types.go``, ``batch/v1/types.go``, ``meta/v1/types.go``).

Deterministic: keys are sorted, so regenerating with the same client version is a no-op.
"""

from __future__ import annotations

import json
import re
import sys
import typing
from pathlib import Path
from typing import Any

from controlplane.api.patch import STRATEGY

OUT = Path(__file__).with_name("openapi_schemas.json")
MARKERS = Path(__file__).with_name("openapi_markers.json")

META = {
    "ObjectMeta", "ListMeta", "LabelSelector", "LabelSelectorRequirement", "OwnerReference",
    "ManagedFieldsEntry", "Condition", "Status", "StatusDetails", "StatusCause", "DeleteOptions",
    "Preconditions", "FieldSelectorRequirement",
}  # fmt: skip
APPS_PREFIXES = ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "ControllerRevision", "RollingUpdate")
BATCH_PREFIXES = ("Job", "CronJob", "PodFailurePolicy", "UncountedTerminatedPods", "SuccessPolicy")
COORDINATION = {"Lease", "LeaseSpec", "LeaseList"}
DISCOVERY = {
    "EndpointSlice",
    "EndpointSliceList",
    "Endpoint",
    "EndpointConditions",
    "EndpointHints",
    "ForZone",
    "ForNode",
}
NETWORKING = {
    "NetworkPolicy",
    "NetworkPolicyList",
    "NetworkPolicySpec",
    "NetworkPolicyIngressRule",
    "NetworkPolicyEgressRule",
    "NetworkPolicyPeer",
    "NetworkPolicyPort",
    "IPBlock",
}
APIREGISTRATION = {"APIService", "APIServiceList", "APIServiceSpec", "APIServiceStatus", "APIServiceCondition"}
AUTOSCALING = {"Scale", "ScaleSpec", "ScaleStatus"}
POLICY = {"Eviction"}
RBAC = {
    "Role", "RoleList", "RoleBinding", "RoleBindingList", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
    "ClusterRoleBindingList", "PolicyRule", "RoleRef", "Subject", "AggregationRule",
}  # fmt: skip
AUTHORIZATION = {
    "SelfSubjectAccessReview", "SelfSubjectAccessReviewSpec", "SelfSubjectRulesReview",
    "SelfSubjectRulesReviewSpec", "SubjectAccessReview", "SubjectAccessReviewSpec", "SubjectAccessReviewStatus",
    "LocalSubjectAccessReview", "SubjectRulesReviewStatus", "ResourceAttributes", "NonResourceAttributes",
    "ResourceRule", "NonResourceRule", "FieldSelectorAttributes", "LabelSelectorAttributes",
}  # fmt: skip
AUTHENTICATION = {
    "SelfSubjectReview", "SelfSubjectReviewStatus", "TokenReview", "TokenReviewSpec", "TokenReviewStatus", "UserInfo",
}  # fmt: skip
# Ingress, IngressClass and their parts (HTTPIngressPath, IngressBackend, ServiceBackendPort …)
NETWORKING_PREFIXES = ("Ingress", "HTTPIngress", "ServiceBackendPort")
POLICY_PREFIXES = ("PodDisruptionBudget",)
SCHEDULING = {"PriorityClass", "PriorityClassList"}

INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"

# (python class, group, version, kind) of the top-level kinds; lists are derived.
ROOTS: list[tuple[str, str, str, str]] = [
    ("V1Namespace", "", "v1", "Namespace"),
    ("V1Pod", "", "v1", "Pod"),
    ("V1Service", "", "v1", "Service"),
    ("V1Endpoints", "", "v1", "Endpoints"),
    ("V1Node", "", "v1", "Node"),
    ("CoreV1Event", "", "v1", "Event"),
    ("V1ConfigMap", "", "v1", "ConfigMap"),
    ("V1Secret", "", "v1", "Secret"),
    ("V1ServiceAccount", "", "v1", "ServiceAccount"),
    ("V1Binding", "", "v1", "Binding"),
    ("V1Deployment", "apps", "v1", "Deployment"),
    ("V1ReplicaSet", "apps", "v1", "ReplicaSet"),
    ("V1DaemonSet", "apps", "v1", "DaemonSet"),
    ("V1StatefulSet", "apps", "v1", "StatefulSet"),
    ("V1ControllerRevision", "apps", "v1", "ControllerRevision"),
    ("V1Job", "batch", "v1", "Job"),
    ("V1CronJob", "batch", "v1", "CronJob"),
    ("V1ReplicationController", "", "v1", "ReplicationController"),
    ("V1ComponentStatus", "", "v1", "ComponentStatus"),
    ("V1Lease", "coordination.k8s.io", "v1", "Lease"),
    ("V1EndpointSlice", "discovery.k8s.io", "v1", "EndpointSlice"),
    ("V1NetworkPolicy", "networking.k8s.io", "v1", "NetworkPolicy"),
    ("V1APIService", "apiregistration.k8s.io", "v1", "APIService"),
    ("V1ResourceQuota", "", "v1", "ResourceQuota"),
    ("V1LimitRange", "", "v1", "LimitRange"),
    ("V1PodDisruptionBudget", "policy", "v1", "PodDisruptionBudget"),
    ("V1PriorityClass", "scheduling.k8s.io", "v1", "PriorityClass"),
    ("V1Ingress", "networking.k8s.io", "v1", "Ingress"),
    ("V1IngressClass", "networking.k8s.io", "v1", "IngressClass"),
    ("V1Scale", "autoscaling", "v1", "Scale"),
    ("V1Eviction", "policy", "v1", "Eviction"),
    ("V1Role", "rbac.authorization.k8s.io", "v1", "Role"),
    ("V1RoleBinding", "rbac.authorization.k8s.io", "v1", "RoleBinding"),
    ("V1ClusterRole", "rbac.authorization.k8s.io", "v1", "ClusterRole"),
    ("V1ClusterRoleBinding", "rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
    ("V1SelfSubjectAccessReview", "authorization.k8s.io", "v1", "SelfSubjectAccessReview"),
    ("V1SelfSubjectRulesReview", "authorization.k8s.io", "v1", "SelfSubjectRulesReview"),
    ("V1SubjectAccessReview", "authorization.k8s.io", "v1", "SubjectAccessReview"),
    ("V1LocalSubjectAccessReview", "authorization.k8s.io", "v1", "LocalSubjectAccessReview"),
    ("V1SelfSubjectReview", "authentication.k8s.io", "v1", "SelfSubjectReview"),
    ("V1TokenReview", "authentication.k8s.io", "v1", "TokenReview"),
    ("V1Status", "", "v1", "Status"),
    ("V1DeleteOptions", "", "v1", "DeleteOptions"),
]


def go_name(py_name: str) -> str:
    """``V1PodSpec`` → ``PodSpec``; ``CoreV1EndpointPort`` → ``EndpointPort``."""
    m = re.match(r"^(?:[A-Z][a-z]+)?V\d+(?:(?:alpha|beta)\d+)?(.+)$", py_name)
    return m.group(1) if m else py_name


def schema_name(py_name: str) -> str:
    go = go_name(py_name)
    if go in META:
        return f"io.k8s.apimachinery.pkg.apis.meta.v1.{go}"
    if py_name.startswith("Discovery") or go in DISCOVERY:
        return f"io.k8s.api.discovery.v1.{go}"
    if go in APIREGISTRATION or py_name.startswith("Apiregistration"):
        return f"io.k8s.kube-aggregator.pkg.apis.apiregistration.v1.{go}"
    if go in NETWORKING or go.startswith(NETWORKING_PREFIXES):
        return f"io.k8s.api.networking.v1.{go}"
    if go in SCHEDULING:
        return f"io.k8s.api.scheduling.v1.{go}"
    if go.startswith(POLICY_PREFIXES):
        return f"io.k8s.api.policy.v1.{go}"
    if go in COORDINATION:
        return f"io.k8s.api.coordination.v1.{go}"
    if go in AUTOSCALING:
        return f"io.k8s.api.autoscaling.v1.{go}"
    if go in POLICY:
        return f"io.k8s.api.policy.v1.{go}"
    if go in RBAC:
        return f"io.k8s.api.rbac.v1.{go}"
    if go in AUTHORIZATION:
        return f"io.k8s.api.authorization.v1.{go}"
    if go in AUTHENTICATION:
        return f"io.k8s.api.authentication.v1.{go}"
    if go.startswith(APPS_PREFIXES):
        return f"io.k8s.api.apps.v1.{go}"
    if go.startswith(BATCH_PREFIXES):
        return f"io.k8s.api.batch.v1.{go}"
    return f"io.k8s.api.core.v1.{go}"


_CONVENTIONS = "https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"
_FALLBACK_DESCRIPTIONS = {
    "metadata": "Standard object's metadata. More info: " + _CONVENTIONS + "#metadata",
    "listmeta": "Standard list metadata. More info: " + _CONVENTIONS + "#types-kinds",
    "spec": "Specification of the desired behavior of the {}. More info: " + _CONVENTIONS + "#spec-and-status",
    "status": (
        "Most recently observed status of the {}. This data may not be up to date. Populated by the system. "
        "Read-only. More info: " + _CONVENTIONS + "#spec-and-status"
    ),
}


# Descriptions of struct-valued fields that the client models do not carry, written for the
# fields ``kubectl explain`` users reach first (paraphrasing the Kubernetes API reference).
_SELECTOR = (
    "Label query over pods that should match the replica count. It must match the pod template's labels. "
    "More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors"
)
_TEMPLATE = "Template describes the pods that will be created."
_FIELD_DESCRIPTIONS: dict[tuple[str, str], str] = {
    ("DeploymentSpec", "selector"): _SELECTOR + " Immutable after creation in apps/v1.",
    ("DeploymentSpec", "strategy"): "The deployment strategy to use to replace existing pods with new ones.",
    ("DeploymentSpec", "template"): _TEMPLATE + ' The only allowed template.spec.restartPolicy value is "Always".',
    ("ReplicaSetSpec", "selector"): _SELECTOR,
    ("ReplicaSetSpec", "template"): _TEMPLATE + " Used when the number of pods is below the desired count.",
    ("DaemonSetSpec", "selector"): _SELECTOR,
    ("DaemonSetSpec", "template"): _TEMPLATE + " Exactly one copy runs on every eligible node.",
    ("DaemonSetSpec", "updateStrategy"): "An update strategy to replace existing DaemonSet pods with new pods.",
    ("StatefulSetSpec", "selector"): _SELECTOR,
    ("StatefulSetSpec", "template"): _TEMPLATE + " Each pod gets a stable identity (name-ordinal).",
    (
        "StatefulSetSpec",
        "updateStrategy",
    ): "Indicates the StatefulSetUpdateStrategy used to update pods when the template changes.",
    ("StatefulSetSpec", "persistentVolumeClaimRetentionPolicy"): (
        "Describes the lifecycle of persistent volume claims created from volumeClaimTemplates."
    ),
    ("StatefulSetSpec", "ordinals"): "Controls the numbering of replica indices in a StatefulSet.",
    ("JobSpec", "selector"): "A label query over pods that should match the pod count. Normally set by the system.",
    ("JobSpec", "template"): _TEMPLATE
    + ' The only allowed template.spec.restartPolicy values are "Never" or "OnFailure".',
    ("JobSpec", "podFailurePolicy"): "Specifies the policy of handling failed pods.",
    ("JobSpec", "successPolicy"): "Specifies the policy when the Job can be declared as succeeded.",
    (
        "DeploymentStrategy",
        "rollingUpdate",
    ): "Rolling update config params. Present only if DeploymentStrategyType = RollingUpdate.",
    ("PodSpec", "affinity"): "If specified, the pod's scheduling constraints.",
    (
        "PodSpec",
        "dnsConfig",
    ): "Specifies the DNS parameters of a pod, merged into the configuration generated from DNSPolicy.",
    ("PodSpec", "os"): "Specifies the OS of the containers in the pod.",
    (
        "PodSpec",
        "resources",
    ): "Resources is the total amount of CPU and Memory resources required by all containers in the pod.",
    ("PodSpec", "securityContext"): (
        "SecurityContext holds pod-level security attributes and common container settings. "
        "Optional: Defaults to empty."
    ),
    (
        "Container",
        "lifecycle",
    ): "Actions that the management system should take in response to container lifecycle events.",
    (
        "Container",
        "livenessProbe",
    ): "Periodic probe of container liveness. Container will be restarted if the probe fails.",
    ("Container", "readinessProbe"): (
        "Periodic probe of container service readiness. "
        "Container will be removed from service endpoints if the probe fails."
    ),
    ("Container", "startupProbe"): (
        "StartupProbe indicates that the Pod has successfully initialized. No other probe runs until it succeeds."
    ),
    ("Container", "resources"): "Compute Resources required by this container. Cannot be updated.",
    ("Container", "securityContext"): "SecurityContext defines the security options the container should be run with.",
    ("ServiceSpec", "sessionAffinityConfig"): "sessionAffinityConfig contains the configurations of session affinity.",
    (
        "ServiceStatus",
        "loadBalancer",
    ): "LoadBalancer contains the current status of the load-balancer, if one is present.",
    ("NodeStatus", "daemonEndpoints"): "Endpoints of daemons running on the Node.",
    ("NodeStatus", "nodeInfo"): "Set of ids/uuids to uniquely identify the node.",
    ("Probe", "exec"): "Exec specifies a command to execute in the container.",
    ("Probe", "grpc"): "GRPC specifies a GRPC HealthCheckRequest.",
    ("Probe", "httpGet"): "HTTPGet specifies an HTTP GET request to perform.",
    ("Probe", "tcpSocket"): "TCPSocket specifies a connection to a TCP port.",
    ("EnvVar", "valueFrom"): "Source for the environment variable's value. Cannot be used if value is not empty.",
    ("Volume", "configMap"): "configMap represents a configMap that should populate this volume.",
    ("Volume", "secret"): "secret represents a secret that should populate this volume.",
    ("Volume", "emptyDir"): "emptyDir represents a temporary directory that shares a pod's lifetime.",
    ("Volume", "hostPath"): "hostPath represents a pre-existing file or directory on the host machine.",
    (
        "Volume",
        "persistentVolumeClaim",
    ): "persistentVolumeClaimVolumeSource represents a reference to a PersistentVolumeClaim.",
    ("Volume", "projected"): "projected items for all in one resources secrets, configmaps, and downward API.",
    ("Volume", "downwardAPI"): "downwardAPI represents downward API about the pod that should populate this volume.",
    ("Event", "involvedObject"): "The object that this event is about.",
    ("Event", "source"): "The component reporting this event. Should be a short machine understandable string.",
    ("Event", "series"): "Data about the Event series this event represents or nil if it's a singleton Event.",
    ("Event", "related"): "Optional secondary object for more complex actions.",
    ("ContainerStatus", "state"): "State holds details about the container's current condition.",
    ("ContainerStatus", "lastState"): "LastTerminationState holds the last termination state of the container.",
    ("ContainerState", "running"): "Details about a running container.",
    ("ContainerState", "terminated"): "Details about a terminated container.",
    ("ContainerState", "waiting"): "Details about a waiting container.",
}


# Go ``int64`` fields (everything else the client models call ``int`` is ``int32``), as
# ``(Go struct, JSON field)``.
_INT64 = {
    ("ControllerRevision", "revision"), ("DaemonSetStatus", "observedGeneration"),
    ("DeploymentStatus", "observedGeneration"), ("ReplicaSetStatus", "observedGeneration"),
    ("StatefulSetStatus", "observedGeneration"), ("JobSpec", "activeDeadlineSeconds"),
    ("CronJobSpec", "startingDeadlineSeconds"), ("ReplicationControllerStatus", "observedGeneration"),
    ("ContainerImage", "sizeBytes"), ("LinuxContainerUser", "gid"), ("LinuxContainerUser", "uid"),
    ("LinuxContainerUser", "supplementalGroups"), ("NodeSwapStatus", "capacity"),
    ("PodCondition", "observedGeneration"), ("PodStatus", "observedGeneration"),
    ("PodSecurityContext", "fsGroup"), ("PodSecurityContext", "runAsGroup"), ("PodSecurityContext", "runAsUser"),
    ("PodSecurityContext", "supplementalGroups"), ("PodSpec", "activeDeadlineSeconds"),
    ("PodSpec", "terminationGracePeriodSeconds"), ("Probe", "terminationGracePeriodSeconds"),
    ("SecurityContext", "runAsGroup"), ("SecurityContext", "runAsUser"),
    ("ServiceAccountTokenProjection", "expirationSeconds"), ("SleepAction", "seconds"),
    ("Toleration", "tolerationSeconds"), ("Condition", "observedGeneration"),
    ("PodDisruptionBudgetStatus", "observedGeneration"),
    ("DeleteOptions", "gracePeriodSeconds"), ("ListMeta", "remainingItemCount"),
    ("ObjectMeta", "deletionGracePeriodSeconds"), ("ObjectMeta", "generation"),
    # uid/gid-valued fields of newer projected volumes: user IDs are int64 in Go
    ("ClusterTrustBundleProjection", "user"), ("ConfigMapVolumeSource", "defaultUser"),
    ("DownwardAPIVolumeFile", "user"), ("DownwardAPIVolumeSource", "defaultUser"), ("KeyToPath", "user"),
    ("PodCertificateProjection", "user"), ("ProjectedVolumeSource", "defaultUser"),
    ("SecretVolumeSource", "defaultUser"), ("ServiceAccountTokenProjection", "user"),
}  # fmt: skip

# ``resource.Quantity`` fields (maps of them, or one), which the client models type as strings.
_QUANTITY = {
    ("ResourceRequirements", "limits"), ("ResourceRequirements", "requests"),
    ("VolumeResourceRequirements", "limits"), ("VolumeResourceRequirements", "requests"),
    ("ContainerStatus", "allocatedResources"), ("PodStatus", "allocatedResources"),
    ("PersistentVolumeClaimStatus", "allocatedResources"), ("PersistentVolumeClaimStatus", "capacity"),
    ("NodeStatus", "allocatable"), ("NodeStatus", "capacity"), ("PodSpec", "overhead"),
    ("EmptyDirVolumeSource", "sizeLimit"), ("ResourceFieldSelector", "divisor"),
    ("NodeAllocatableMappedResources", "quantity"),
    ("ResourceQuotaSpec", "hard"), ("ResourceQuotaStatus", "hard"), ("ResourceQuotaStatus", "used"),
    ("LimitRangeItem", "default"), ("LimitRangeItem", "defaultRequest"), ("LimitRangeItem", "max"),
    ("LimitRangeItem", "min"), ("LimitRangeItem", "maxLimitRequestRatio"),
}  # fmt: skip

# String enums kube-apiserver's validation enforces ("Unsupported value"), as its v3 documents list them.
_ENUMS: dict[tuple[str, str], list[str]] = {
    ("Container", "imagePullPolicy"): ["Always", "IfNotPresent", "Never"],
    ("Container", "terminationMessagePolicy"): ["FallbackToLogsOnError", "File"],
    ("ContainerPort", "protocol"): ["SCTP", "TCP", "UDP"],
    ("ServicePort", "protocol"): ["SCTP", "TCP", "UDP"],
    ("PodSpec", "restartPolicy"): ["Always", "Never", "OnFailure"],
    ("PodSpec", "dnsPolicy"): ["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
    ("ServiceSpec", "type"): ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
    ("ServiceSpec", "sessionAffinity"): ["ClientIP", "None"],
    ("ServiceSpec", "externalTrafficPolicy"): ["Cluster", "Local"],
    ("ServiceSpec", "internalTrafficPolicy"): ["Cluster", "Local"],
    ("DeploymentStrategy", "type"): ["Recreate", "RollingUpdate"],
    ("DaemonSetUpdateStrategy", "type"): ["OnDelete", "RollingUpdate"],
    ("StatefulSetUpdateStrategy", "type"): ["OnDelete", "RollingUpdate"],
    ("StatefulSetSpec", "podManagementPolicy"): ["OrderedReady", "Parallel"],
    ("JobSpec", "completionMode"): ["Indexed", "NonIndexed"],
    ("CronJobSpec", "concurrencyPolicy"): ["Allow", "Forbid", "Replace"],
    ("Toleration", "operator"): ["Equal", "Exists"],
    ("Taint", "effect"): ["NoExecute", "NoSchedule", "PreferNoSchedule"],
    ("PriorityClass", "preemptionPolicy"): ["Never", "PreemptLowerPriority"],
    ("PodSpec", "preemptionPolicy"): ["Never", "PreemptLowerPriority"],
    ("IngressSpec", "pathType"): ["Exact", "ImplementationSpecific", "Prefix"],
    ("HTTPIngressPath", "pathType"): ["Exact", "ImplementationSpecific", "Prefix"],
    ("PodDisruptionBudgetSpec", "unhealthyPodEvictionPolicy"): ["AlwaysAllow", "IfHealthyBudget"],
}


def _typed(go: str, json_name: str, prop: dict[str, Any]) -> dict[str, Any]:
    """``prop`` with the Go type's format (int64, quantity) and enum, where the tables have them."""
    key = (go, json_name)
    inner = prop.get("items") or prop.get("additionalProperties") or prop
    if key in _INT64 and inner.get("format") == "int32":
        inner["format"] = "int64"
    if key in _QUANTITY and inner.get("type") == "string":
        inner["format"] = "quantity"
    if key in _ENUMS and prop.get("type") == "string":
        prop["enum"] = list(_ENUMS[key])
    return prop


def _mark(prop: dict[str, Any], marks: dict[str, Any] | None) -> None:
    """Apply one field's Go markers (``openapi_markers.json``) to its property schema."""
    if not marks:
        return
    if marks.get("pointer") and "allOf" in prop:
        prop.pop("default", None)  # kube-openapi defaults only non-pointer structs to {}
    if prop.get("type") == "array":
        if "listType" in marks:
            prop["x-kubernetes-list-type"] = marks["listType"]
        if "listMapKeys" in marks:
            prop["x-kubernetes-list-map-keys"] = list(marks["listMapKeys"])
        if "itemsEnum" in marks and prop["items"].get("type") == "string":
            prop["items"]["enum"] = list(marks["itemsEnum"])
    if prop.get("type") == "object" and "mapType" in marks:
        prop["x-kubernetes-map-type"] = marks["mapType"]
    if "enum" in marks and prop.get("type") == "string":
        prop["enum"] = list(marks["enum"])
        lines = [line.rstrip() for line in marks["enumLines"]]
        prop["description"] = "\n".join([prop.get("description", ""), "", "Possible enum values:", *lines])


def _ref(name: str) -> dict[str, Any]:
    return {"allOf": [{"$ref": f"#/components/schemas/{name}"}], "default": {}}


class Generator:
    def __init__(self) -> None:
        import kubernetes.client.models as models

        self.models = models
        markers = json.loads(MARKERS.read_text())
        self.field_markers: dict[str, dict[str, dict[str, Any]]] = markers["fields"]
        self.type_markers: dict[str, dict[str, Any]] = markers["types"]
        self.schemas: dict[str, dict[str, Any]] = {}
        self.pending: list[str] = []

    def type_schema(self, t: str, annotation: Any) -> dict[str, Any]:
        t = t.strip()
        if t.startswith("List[") and t.endswith("]"):
            return {"type": "array", "items": self.type_schema(t[5:-1], None)}
        if t.startswith("Dict[str, ") and t.endswith("]"):
            return {"type": "object", "additionalProperties": self.type_schema(t[10:-1], None)}
        simple = {
            "str": {"type": "string"},
            "int": {"type": "integer", "format": "int32"},
            "bool": {"type": "boolean"},
            "float": {"type": "number", "format": "double"},
            "datetime": {"type": "string", "format": "date-time"},
            "bytes": {"type": "string", "format": "byte"},
        }
        if t in simple:
            return dict(simple[t])
        if t == "object":
            args = typing.get_args(annotation) if annotation is not None else ()
            flat = {a for arg in args for a in (typing.get_args(arg)[:1] or (arg,))}
            if int in flat and str in flat:
                self.schemas.setdefault(INT_OR_STRING, {"type": "string", "format": "int-or-string"})
                return _ref(INT_OR_STRING)
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        if hasattr(self.models, t):
            name = schema_name(t)
            if name not in self.schemas and t not in self.pending:
                self.pending.append(t)
            return _ref(name)
        raise ValueError(f"unknown type string {t!r}")

    def model(self, py_name: str) -> None:
        cls = getattr(self.models, py_name)
        go = go_name(py_name)
        name = schema_name(py_name)
        if name in self.schemas:
            return
        schema: dict[str, Any] = {"type": "object"}
        self.schemas[name] = schema  # reserve first: types can be recursive
        doc = (cls.__doc__ or "").strip().split("\n\n")[0].strip()
        if doc and not doc.startswith("Attributes:"):
            schema["description"] = " ".join(doc.split())
        props: dict[str, Any] = {}
        required: list[str] = []
        strategies = STRATEGY.get(go, {})
        field_markers = self.field_markers.get(name, {})
        for attr, type_str in cls.openapi_types.items():
            json_name = cls.attribute_map[attr]
            field = cls.model_fields.get(attr)
            prop = _typed(go, json_name, self.type_schema(type_str, field.annotation if field is not None else None))
            if field is not None and field.description:
                prop["description"] = field.description
            elif (go, json_name) in _FIELD_DESCRIPTIONS:
                prop["description"] = _FIELD_DESCRIPTIONS[(go, json_name)]
            elif json_name in _FALLBACK_DESCRIPTIONS:
                # the client models drop the descriptions of struct-valued fields; these three are
                # on every kind and read as in Kubernetes' own documents
                target = go.removesuffix("Spec").removesuffix("Template")
                key = "listmeta" if type_str == "V1ListMeta" else json_name
                prop["description"] = _FALLBACK_DESCRIPTIONS[key].format(target)
            fs = strategies.get(json_name)
            if fs is not None and fs.strategy:
                prop["x-kubernetes-patch-strategy"] = fs.strategy
                if fs.merge_key:
                    prop["x-kubernetes-patch-merge-key"] = fs.merge_key
            elif json_name == "conditions" and go.endswith("Status") and prop.get("type") == "array":
                prop["x-kubernetes-patch-strategy"] = "merge"
                prop["x-kubernetes-patch-merge-key"] = "type"
            _mark(prop, field_markers.get(json_name))
            if field is not None and field.is_required():
                required.append(json_name)
            props[json_name] = prop
        schema["properties"] = dict(sorted(props.items()))
        if required:
            schema["required"] = sorted(required)
        if self.type_markers.get(name, {}).get("mapType") == "atomic":
            schema["x-kubernetes-map-type"] = "atomic"

    def run(self) -> dict[str, Any]:
        kinds: list[dict[str, str]] = []
        for py_name, group, version, kind in ROOTS:
            self.pending.append(py_name)
            names = [py_name]
            list_name = py_name + "List"
            if hasattr(self.models, list_name):
                self.pending.append(list_name)
                names.append(list_name)
            for n, k in zip(names, (kind, kind + "List"), strict=False):
                kinds.append({"schema": schema_name(n), "group": group, "version": version, "kind": k})
        while self.pending:
            self.model(self.pending.pop(0))
        for entry in kinds:
            gvk = {"group": entry["group"], "kind": entry["kind"], "version": entry["version"]}
            self.schemas[entry["schema"]]["x-kubernetes-group-version-kind"] = [gvk]
        return {"schemas": dict(sorted(self.schemas.items()))}


def main() -> int:
    data = Generator().run()
    text = json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"
    OUT.write_text(text)
    sys.stdout.write(f"wrote {OUT} ({len(data['schemas'])} schemas, {len(text)} bytes)\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
