"""Unit tests: quota evaluators and verdicts, LimitRanger, Priority admission, PDB math, tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from controlplane.api import disruption, quota, registry, tables
from controlplane.apiserver import limitranger, priority_admission
from controlplane.controllers.resourcequota import quota_status, resource_for

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def pod(name: str, cpu: str | None = None, mem_limit: str | None = None, **kw: Any) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if cpu:
        res["requests"] = {"cpu": cpu}
    if mem_limit:
        res["limits"] = {"memory": mem_limit}
    p: dict[str, Any] = {
        "metadata": {"name": name, "namespace": "ns", "labels": kw.pop("labels", {})},
        "spec": {"containers": [{"name": "c", "image": "busybox", "resources": res}]},
        "status": kw.pop("status", {"phase": "Running"}),
    }
    p["metadata"].update(kw)
    return p


def q(name: str, **hard: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": {"hard": hard}}


# -- quota -------------------------------------------------------------------------------------


def test_pod_usage_counts_objects_and_compute() -> None:
    u = quota.usage(registry.PODS, pod("p", cpu="250m", mem_limit="1Gi"))
    assert u["pods"] == 1 and u["count/pods"] == 1
    assert u["requests.cpu"] == Decimal("0.25") and u["cpu"] == Decimal("0.25")
    assert u["limits.memory"] == 1024**3
    assert quota.usage(registry.PODS, pod("done", status={"phase": "Succeeded"})) == {}
    assert quota.usage(registry.DEPLOYMENTS, {"metadata": {}}) == {"count/deployments.apps": 1}


def test_exceeded_quota_message_is_kubernetes_wording() -> None:
    existing = [pod("a"), pod("b")]

    def used_of(names: Any, q: Any) -> quota.Usage:
        return quota.namespace_usage(registry.PODS, existing, names, q)

    msg = quota.check(registry.PODS, pod("c"), [q("q", pods="2")], used_of)
    assert msg == "exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
    assert quota.check(registry.PODS, pod("c"), [q("q", pods="3")], used_of) is None
    err = quota.forbidden(registry.PODS, pod("c"), msg)
    assert err.code == 403 and err.message == f'pods "c" is forbidden: {msg}'


def test_compute_quota_needs_requests_and_sums_them() -> None:
    existing = [pod("a", cpu="600m")]

    def used_of(names: Any, q: Any) -> quota.Usage:
        return quota.namespace_usage(registry.PODS, existing, names, q)

    quotas = [q("cq", **{"requests.cpu": "1"})]
    assert quota.check(registry.PODS, pod("b"), quotas, used_of) == (
        "failed quota: cq: must specify requests.cpu for: c"
    )
    assert quota.check(registry.PODS, pod("b", cpu="400m"), quotas, used_of) is None
    assert quota.check(registry.PODS, pod("b", cpu="500m"), quotas, used_of) == (
        "exceeded quota: cq, requested: requests.cpu=500m, used: requests.cpu=600m, limited: requests.cpu=1"
    )


def test_count_and_service_quotas() -> None:
    svc = {"metadata": {"name": "s"}, "spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]}}
    u = quota.usage(registry.SERVICES, svc)
    assert u == {"count/services": 1, "services": 1, "services.nodeports": 2}
    msg = quota.check(
        registry.CONFIGMAPS,
        {"metadata": {"name": "x"}},
        [q("q", **{"count/configmaps": "0"})],
        lambda names, _q: {n: Decimal(0) for n in names},
    )
    assert (
        msg == "exceeded quota: q, requested: count/configmaps=1, used: count/configmaps=0, limited: count/configmaps=0"
    )


def test_format_quantity() -> None:
    assert quota.format_quantity("requests.memory", Decimal(2 * 1024**3)) == "2Gi"
    assert quota.format_quantity("requests.cpu", Decimal("1.5")) == "1500m"
    assert quota.format_quantity("pods", Decimal(3)) == "3"


def test_quota_controller_status() -> None:
    assert resource_for("count/deployments.apps") is registry.DEPLOYMENTS
    st = quota_status(q("q", pods="5", **{"requests.memory": "1Gi"}), {registry.PODS: [pod("a"), pod("b")]})
    assert st == {"hard": {"pods": "5", "requests.memory": "1Gi"}, "used": {"pods": "2", "requests.memory": "0"}}


# -- LimitRanger ---------------------------------------------------------------------------------


def lr(*items: dict[str, Any]) -> dict[str, Any]:
    obj = {"metadata": {"name": "lr", "namespace": "ns"}, "spec": {"limits": list(items)}}
    limitranger.default_limit_range(obj)
    return obj


def test_limitrange_defaults_default_from_max_and_request_from_default() -> None:
    obj = lr({"type": "Container", "max": {"memory": "1Gi"}, "min": {"cpu": "100m"}})
    item = obj["spec"]["limits"][0]
    assert item["default"] == {"memory": "1Gi"}
    assert item["defaultRequest"] == {"memory": "1Gi", "cpu": "100m"}


def test_limitranger_defaults_containers_and_annotates() -> None:
    p = pod("p")
    limitranger.default_pod(
        p, [lr({"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "200m"}})]
    )
    res = p["spec"]["containers"][0]["resources"]
    assert res == {"limits": {"cpu": "500m"}, "requests": {"cpu": "200m"}}
    assert p["metadata"]["annotations"][limitranger.ANNOTATION] == (
        "LimitRanger plugin set: cpu limit for container c; cpu request for container c"
    )
    given = pod("g", cpu="300m")
    limitranger.default_pod(given, [lr({"type": "Container", "defaultRequest": {"cpu": "200m"}})])
    assert given["spec"]["containers"][0]["resources"]["requests"] == {"cpu": "300m"}


def test_limitranger_min_max_ratio_wording() -> None:
    ranges = [lr({"type": "Container", "min": {"cpu": "100m"}, "max": {"memory": "1Gi"}})]
    assert limitranger.validate_pod(pod("p", cpu="50m", mem_limit="512Mi"), ranges) == (
        "minimum cpu usage per Container is 100m, but request is 50m"
    )
    assert limitranger.validate_pod(pod("p", cpu="50m", mem_limit="2Gi"), ranges) == (
        "[minimum cpu usage per Container is 100m, but request is 50m, "
        "maximum memory usage per Container is 1Gi, but limit is 2Gi]"
    )
    assert limitranger.validate_pod(pod("p", cpu="200m", mem_limit="1Gi"), ranges) is None
    ratio = [{"spec": {"limits": [{"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}]}}]
    p = pod("p", cpu="100m")
    p["spec"]["containers"][0]["resources"]["limits"] = {"cpu": "500m"}
    assert limitranger.validate_pod(p, ratio) == (
        "cpu max limit to request ratio per Container is 2, but provided ratio is 5.000000"
    )
    per_pod = [{"spec": {"limits": [{"type": "Pod", "max": {"memory": "1Gi"}}]}}]
    two = pod("p", mem_limit="768Mi")
    two["spec"]["containers"].append({"name": "d", "resources": {"limits": {"memory": "512Mi"}}})
    assert limitranger.validate_pod(two, per_pod) == "maximum memory usage per Pod is 1Gi, but limit is 1280Mi"


# -- Priority ------------------------------------------------------------------------------------


def test_priority_admission() -> None:
    classes = {c["metadata"]["name"]: c for c in priority_admission.system_classes()}
    classes["low"] = {"metadata": {"name": "low"}, "value": 10, "globalDefault": True, "preemptionPolicy": "Never"}
    p = pod("p")
    p["spec"]["priorityClassName"] = "system-node-critical"
    assert priority_admission.admit_pod(p, classes.get, lambda: list(classes.values())) is None
    assert p["spec"]["priority"] == 2000001000 and p["spec"]["preemptionPolicy"] == "PreemptLowerPriority"
    d = pod("d")
    assert priority_admission.admit_pod(d, classes.get, lambda: list(classes.values())) is None
    assert d["spec"]["priority"] == 10 and d["spec"]["priorityClassName"] == "low"
    assert d["spec"]["preemptionPolicy"] == "Never"
    bad = pod("b")
    bad["spec"]["priorityClassName"] = "gold"
    assert priority_admission.admit_pod(bad, classes.get, list) == "no PriorityClass with name gold was found"
    none = pod("n")
    assert priority_admission.admit_pod(none, classes.get, list) is None and none["spec"]["priority"] == 0
    forced = pod("f")
    forced["spec"]["priority"] = 5
    assert "must not be provided in pod spec" in str(priority_admission.admit_pod(forced, classes.get, list))


# -- PodDisruptionBudget ---------------------------------------------------------------------------

READY = {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}


def pdb(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "b", "namespace": "ns", "generation": 1},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, **spec},
    }


def test_pdb_status_min_available_and_max_unavailable() -> None:
    pods = [pod(f"p{i}", labels={"app": "x"}, status=READY) for i in range(3)]
    pods.append(pod("other", labels={"app": "y"}, status=READY))
    pods.append(pod("unready", labels={"app": "x"}))
    st = disruption.compute_status(pdb(minAvailable=2), pods, NOW)
    assert (st["expectedPods"], st["currentHealthy"], st["desiredHealthy"], st["disruptionsAllowed"]) == (4, 3, 2, 1)
    assert st["observedGeneration"] == 1
    assert st["conditions"][0]["type"] == "DisruptionAllowed" and st["conditions"][0]["reason"] == "SufficientPods"
    st = disruption.compute_status(pdb(maxUnavailable="50%"), pods, NOW)
    assert st["desiredHealthy"] == 2 and st["disruptionsAllowed"] == 1
    st = disruption.compute_status(pdb(minAvailable="100%"), pods, NOW)
    assert st["disruptionsAllowed"] == 0 and st["conditions"][0]["status"] == "False"
    assert st["conditions"][0]["reason"] == "InsufficientPods"
    nil = pdb(minAvailable=1)
    nil["spec"]["selector"] = None
    assert disruption.compute_status(nil, pods, NOW)["expectedPods"] == 0


def test_pdb_disrupted_pods_do_not_count_until_the_timeout() -> None:
    pods = [pod(f"p{i}", labels={"app": "x"}, status=READY) for i in range(2)]
    b = pdb(minAvailable=1)
    b["status"] = {"disruptedPods": {"p0": NOW.strftime("%Y-%m-%dT%H:%M:%SZ")}}
    assert disruption.compute_status(b, pods, NOW)["currentHealthy"] == 1
    later = NOW + disruption.DELETION_TIMEOUT + timedelta(seconds=1)
    assert disruption.compute_status(b, pods, later)["currentHealthy"] == 2


def test_eviction_verdicts() -> None:
    ready = pod("p", labels={"app": "x"}, status=READY)
    b = pdb(minAvailable=2)
    b["status"] = {"observedGeneration": 1, "disruptionsAllowed": 0, "currentHealthy": 2, "desiredHealthy": 2}
    assert disruption.eviction_verdict(b, ready) == (
        "TooManyRequests",
        "The disruption budget b needs 2 healthy pods and has 2 currently",
    )
    b["metadata"]["generation"] = 2
    assert disruption.eviction_verdict(b, ready) == (
        "TooManyRequests",
        "The disruption budget b is still being processed by the server.",
    )
    b["metadata"]["generation"] = 1
    b["status"]["disruptionsAllowed"] = 1
    assert disruption.eviction_verdict(b, ready) is None
    disruption.decrement(b, "p", NOW)
    assert b["status"]["disruptionsAllowed"] == 0 and "p" in b["status"]["disruptedPods"]
    assert disruption.can_ignore_pdb(pod("x", status={"phase": "Pending"}))
    assert not disruption.can_ignore_pdb(ready)


# -- tables -----------------------------------------------------------------------------------------


def test_tables_of_policy_kinds() -> None:
    def cells(res: registry.Resource, obj: dict[str, Any]) -> list[Any]:
        obj["metadata"].setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        table = tables.to_table(res, [obj], list_rv="1", now=NOW + timedelta(minutes=5))
        names = [c["name"] for c in table["columnDefinitions"]]
        return [names, table["rows"][0]["cells"]]

    ing = {
        "metadata": {"name": "web"},
        "spec": {"ingressClassName": "nginx", "rules": [{"host": "a.com"}, {}], "tls": [{"hosts": ["a.com"]}]},
        "status": {"loadBalancer": {"ingress": [{"ip": "10.0.0.1"}]}},
    }
    assert cells(registry.INGRESSES, ing) == [
        ["Name", "Class", "Hosts", "Address", "Ports", "Age"],
        ["web", "nginx", "a.com,*", "10.0.0.1", "80, 443", "5m"],
    ]
    quota_obj = {
        "metadata": {"name": "q"},
        "status": {"hard": {"pods": "2", "limits.cpu": "1"}, "used": {"pods": "1", "limits.cpu": "0"}},
    }
    assert cells(registry.RESOURCEQUOTAS, quota_obj)[1] == ["q", "5m", "pods: 1/2", "limits.cpu: 0/1"]
    b = pdb(minAvailable=1)
    b["status"] = {"disruptionsAllowed": 1}
    assert cells(registry.PODDISRUPTIONBUDGETS, b) == [
        ["Name", "Min Available", "Max Unavailable", "Allowed Disruptions", "Age"],
        ["b", "1", "N/A", 1, "5m"],
    ]
    pc = {"metadata": {"name": "high"}, "value": 1000, "preemptionPolicy": "PreemptLowerPriority"}
    assert cells(registry.PRIORITYCLASSES, pc)[1] == ["high", 1000, "false", "5m", "PreemptLowerPriority"]
    assert cells(registry.LIMITRANGES, {"metadata": {"name": "lr"}}) == [
        ["Name", "Created At"],
        ["lr", "2026-01-01T00:00:00Z"],
    ]


# -- validation ------------------------------------------------------------------------------------


def causes(res: registry.Resource, obj: dict[str, Any], old: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    from controlplane.api import validation

    if res.namespaced:
        obj["metadata"].setdefault("namespace", "ns")
    return [(c.field, c.message) for c in validation.validate(res, obj, old)]


def test_validation_of_policy_kinds() -> None:
    both = causes(registry.PODDISRUPTIONBUDGETS, pdb(minAvailable=1, maxUnavailable=1))
    assert [f for f, m in both if m.endswith(": minAvailable and maxUnavailable cannot be both set")] == ["spec"]
    assert causes(registry.PODDISRUPTIONBUDGETS, pdb(minAvailable="150%")) == [
        ("spec.minAvailable", 'Invalid value: "150%": must not be greater than 100%')
    ]
    assert causes(registry.PODDISRUPTIONBUDGETS, pdb(maxUnavailable="50%")) == []
    pc = {"metadata": {"name": "huge"}, "value": 2000000000}
    assert causes(registry.PRIORITYCLASSES, pc) == [
        ("value", "Forbidden: maximum allowed value of a user defined priority is 1000000000")
    ]
    fake = {"metadata": {"name": "system-mine"}, "value": 5}
    assert causes(registry.PRIORITYCLASSES, fake)[0][0] == "metadata.name"
    for sys_class in priority_admission.system_classes():
        assert causes(registry.PRIORITYCLASSES, sys_class) == []
    changed = causes(
        registry.PRIORITYCLASSES, {"metadata": {"name": "a"}, "value": 2}, {"metadata": {"name": "a"}, "value": 1}
    )
    assert ("value", "Forbidden: may not be changed in an update.") in changed
    ing = {
        "metadata": {"name": "i"},
        "spec": {"rules": [{"http": {"paths": [{"path": "x", "pathType": "Prefix", "backend": {}}]}}]},
    }
    assert causes(registry.INGRESSES, ing) == [
        ("spec.rules[0].http.paths[0].path", 'Invalid value: "x": must be an absolute path'),
        ("spec.rules[0].http.paths[0].backend", 'Invalid value: "": resource or service backend is required'),
    ]
    del ing["spec"]["rules"][0]["http"]["paths"][0]["pathType"]
    assert ("spec.rules[0].http.paths[0].pathType", "Required value: pathType must be specified") in causes(
        registry.INGRESSES, ing
    )
    bad_lr = {"metadata": {"name": "l"}, "spec": {"limits": [{"type": "Node"}]}}
    assert causes(registry.LIMITRANGES, bad_lr)[0][0] == "spec.limits[0].type"


def test_validation_of_resourcequotas() -> None:
    def rq(**spec: Any) -> dict[str, Any]:
        return {"metadata": {"name": "q"}, "spec": spec}

    good = rq(hard={"pods": "10", "requests.cpu": "1500m", "count/deployments.apps": "2", "hugepages-2Mi": "1Gi"})
    assert causes(registry.RESOURCEQUOTAS, good) == []
    assert causes(registry.RESOURCEQUOTAS, rq(hard={"pods": "-1", "secrets": "1500m", "nodes": "1"})) == [
        ("spec.hard[pods]", 'Invalid value: "-1": must be greater than or equal to 0'),
        ("spec.hard[secrets]", 'Invalid value: "1500m": must be an integer'),
        ("spec.hard[nodes]", 'Invalid value: "nodes": must be a standard resource type or fully qualified'),
        ("spec.hard[nodes]", 'Invalid value: "nodes": must be a standard resource for quota'),
    ]
    (field, message), *_ = causes(registry.RESOURCEQUOTAS, rq(hard={"cpu": "lots"}))
    assert field == "spec.hard[cpu]" and "quantities must match the regular expression" in message
    # scopes: known ones, each valid for every standard resource quoted, never a conflicting pair
    assert causes(registry.RESOURCEQUOTAS, rq(hard={"pods": "1", "cpu": "1"}, scopes=["NotBestEffort"])) == []
    assert causes(registry.RESOURCEQUOTAS, rq(hard={"pods": "1"}, scopes=["Sometimes"])) == [
        ("spec.scopes", 'Invalid value: ["Sometimes"]: unsupported scope')
    ]
    assert causes(registry.RESOURCEQUOTAS, rq(hard={"cpu": "1"}, scopes=["BestEffort"])) == [
        ("spec.scopes", 'Invalid value: ["BestEffort"]: unsupported scope applied to resource')
    ]
    both = causes(registry.RESOURCEQUOTAS, rq(hard={"pods": "1"}, scopes=["Terminating", "NotTerminating"]))
    assert both == [("spec.scopes", 'Invalid value: ["Terminating","NotTerminating"]: conflicting scopes')]
    sel = rq(hard={"pods": "1"}, scopeSelector={"matchExpressions": [{"scopeName": "BestEffort", "operator": "In"}]})
    assert [f for f, _ in causes(registry.RESOURCEQUOTAS, sel)] == [
        "spec.scopeSelector.matchExpressions.operator",
        "spec.scopeSelector.matchExpressions.values",
    ]
    # ValidateResourceQuotaUpdate: scopes are fixed at create
    old = rq(hard={"pods": "1"}, scopes=["NotTerminating"])
    assert causes(registry.RESOURCEQUOTAS, rq(hard={"pods": "2"}, scopes=["NotTerminating"]), old) == []
    assert causes(registry.RESOURCEQUOTAS, rq(hard={"pods": "2"}), old) == [
        ("spec.scopes", "Invalid value: []: field is immutable")
    ]
