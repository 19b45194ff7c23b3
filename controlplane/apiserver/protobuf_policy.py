"""Protobuf field tables of the policy kinds kubectl's ``create`` commands send as protobuf.

Role: ``kubectl create quota|pdb|priorityclass|ingress`` (1.33) POST
``application/vnd.kubernetes.protobuf``; ``protobuf.py`` merges these tables into its own. Field
numbers are those of ``generated.proto`` in k8s.io/api (core/v1 ``ResourceQuota*``, policy/v1
``PodDisruptionBudget*``, scheduling/v1 ``PriorityClass``, networking/v1 ``Ingress*``).

A field whose JSON name is ``""`` is inlined into its parent (Go's embedded ``IngressRuleValue``:
``rule.http`` in JSON, field 2 → field 1 on the wire).
"""

from __future__ import annotations

from controlplane.apiserver.protobuf import F, _f

SCHEMAS: dict[str, dict[int, F]] = {
    "ResourceQuota": {1: _f("metadata", "ObjectMeta"), 2: _f("spec", "ResourceQuotaSpec")},
    "ResourceQuotaSpec": {
        1: _f("hard", "map:quantity"),
        2: _f("scopes", "string", repeated=True),
        3: _f("scopeSelector", "ScopeSelector"),
    },
    "ScopeSelector": {1: _f("matchExpressions", "ScopedResourceSelectorRequirement", repeated=True)},
    "ScopedResourceSelectorRequirement": {
        1: _f("scopeName", "string"),
        2: _f("operator", "string"),
        3: _f("values", "string", repeated=True),
    },
    "PodDisruptionBudget": {1: _f("metadata", "ObjectMeta"), 2: _f("spec", "PodDisruptionBudgetSpec")},
    "PodDisruptionBudgetSpec": {
        1: _f("minAvailable", "intorstr"),
        2: _f("selector", "LabelSelector"),
        3: _f("maxUnavailable", "intorstr"),
        4: _f("unhealthyPodEvictionPolicy", "string"),
    },
    "PriorityClass": {
        1: _f("metadata", "ObjectMeta"),
        2: _f("value", "int", keep=True),
        3: _f("globalDefault", "bool"),
        4: _f("description", "string"),
        5: _f("preemptionPolicy", "string"),
    },
    "Ingress": {1: _f("metadata", "ObjectMeta"), 2: _f("spec", "IngressSpec")},
    "IngressSpec": {
        1: _f("defaultBackend", "IngressBackend"),
        2: _f("tls", "IngressTLS", repeated=True),
        3: _f("rules", "IngressRule", repeated=True),
        4: _f("ingressClassName", "string"),
    },
    "IngressTLS": {1: _f("hosts", "string", repeated=True), 2: _f("secretName", "string")},
    "IngressRule": {1: _f("host", "string"), 2: _f("", "IngressRuleValue")},
    "IngressRuleValue": {1: _f("http", "HTTPIngressRuleValue")},
    "HTTPIngressRuleValue": {1: _f("paths", "HTTPIngressPath", repeated=True)},
    "HTTPIngressPath": {1: _f("path", "string"), 2: _f("backend", "IngressBackend"), 3: _f("pathType", "string")},
    "IngressBackend": {3: _f("resource", "TypedLocalObjectReference"), 4: _f("service", "IngressServiceBackend")},
    "TypedLocalObjectReference": {1: _f("apiGroup", "string"), 2: _f("kind", "string"), 3: _f("name", "string")},
    "IngressServiceBackend": {1: _f("name", "string"), 2: _f("port", "ServiceBackendPort")},
    "ServiceBackendPort": {1: _f("name", "string"), 2: _f("number", "int")},
}

TOP_LEVEL = frozenset({"ResourceQuota", "PodDisruptionBudget", "PriorityClass", "Ingress"})
