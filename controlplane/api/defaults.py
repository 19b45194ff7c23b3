"""Server-side defaulting: the fields kube-apiserver fills in before validation and storage.

Role: ``apply_defaults(resource, obj)`` mutates a create/update body in place so that what is
stored (and what ``kubectl get -o yaml`` / ``describe`` print) matches a real cluster: the
``SetDefaults_*`` functions of Kubernetes' API groups plus the defaulting admission plugins the
default apiserver runs on pods (ServiceAccount, DefaultTolerationSeconds, Priority).

Invariants:
- idempotent: a second call changes nothing; fields the client set are never overwritten;
- only defaults are filled — nothing is allocated here (ClusterIPs, NodePorts and uids are the
  API server's job; Job selectors use ``metadata.uid`` only when the server already set it);
- a body of the wrong shape (e.g. ``spec.containers`` not a list) is left alone for validation
  to report, never a crash.

Pure; no I/O; thread-safe as long as callers do not share ``obj``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from controlplane.api import rbac
from controlplane.api.registry import Resource

__all__ = ["apply_defaults", "default_pod_spec", "drop_type_dependent_fields", "image_pull_policy", "qos_class"]

Obj = dict[str, Any]

# DefaultTolerationSeconds admission: 300 s for the two NoExecute taints the node lifecycle
# controller puts on a node that stops reporting.
DEFAULT_TOLERATION_SECONDS = 300
_NOT_READY = "node.kubernetes.io/not-ready"
_UNREACHABLE = "node.kubernetes.io/unreachable"


def _dict(parent: Obj, key: str) -> Obj | None:
    """``parent[key]`` as a dict, created when missing; ``None`` when present but not a dict."""
    v = parent.get(key)
    if v is None:
        v = {}
        parent[key] = v
    return v if isinstance(v, dict) else None


def _dicts(v: Any) -> list[Obj]:
    return [x for x in v if isinstance(x, dict)] if isinstance(v, list) else []


def image_pull_policy(image: str) -> str:
    """``Always`` for ``:latest`` or an untagged image (without digest), else ``IfNotPresent``."""
    if "@" in image:
        return "IfNotPresent"
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return "Always"
    return "Always" if last.rsplit(":", 1)[1] == "latest" else "IfNotPresent"


def _default_probe(probe: Any) -> None:
    if not isinstance(probe, dict):
        return
    probe.setdefault("timeoutSeconds", 1)
    probe.setdefault("periodSeconds", 10)
    probe.setdefault("successThreshold", 1)
    probe.setdefault("failureThreshold", 3)
    http = probe.get("httpGet")
    if isinstance(http, dict):
        http.setdefault("path", "/")
        http.setdefault("scheme", "HTTP")
    grpc = probe.get("grpc")
    if isinstance(grpc, dict):
        grpc.setdefault("service", "")


def _default_container(c: Obj) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    if isinstance(c.get("image"), str) and c["image"]:
        c.setdefault("imagePullPolicy", image_pull_policy(c["image"]))
    for p in _dicts(c.get("ports")):
        p.setdefault("protocol", "TCP")
    c.setdefault("resources", {})
    for env in _dicts(c.get("env")):
        vf = env.get("valueFrom")
        if isinstance(vf, dict) and isinstance(vf.get("fieldRef"), dict):
            vf["fieldRef"].setdefault("apiVersion", "v1")
    for probe_key in ("livenessProbe", "readinessProbe", "startupProbe"):
        _default_probe(c.get(probe_key))


def _default_volume(v: Obj) -> None:
    for src in ("configMap", "secret", "projected", "downwardAPI"):
        s = v.get(src)
        if isinstance(s, dict):
            s.setdefault("defaultMode", 420)
    hp = v.get("hostPath")
    if isinstance(hp, dict):
        hp.setdefault("type", "")
    ed = v.get("emptyDir")
    if ed is None and not any(k for k in v if k != "name"):
        # a volume with only a name is an emptyDir, as Kubernetes defaults it
        v["emptyDir"] = {}


def default_pod_spec(spec: Obj) -> None:
    """``SetDefaults_PodSpec`` and the container/volume defaults (also used for pod templates)."""
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    host_network = spec.get("hostNetwork") is True
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in _dicts(spec.get(key)):
            _default_container(c)
            if host_network:
                # with the host's network the container port *is* the host port
                for p in _dicts(c.get("ports")):
                    if "containerPort" in p:
                        p.setdefault("hostPort", p["containerPort"])
    for v in _dicts(spec.get("volumes")):
        _default_volume(v)


def _qty(v: Any) -> bool:
    return v is not None and v != "" and v != 0 and v != "0"


def qos_class(spec: Obj) -> str:
    """The pod's QoS class from its containers' requests and limits (``GetPodQOS``)."""
    containers = _dicts(spec.get("containers")) + _dicts(spec.get("initContainers"))
    any_set = False
    guaranteed = True
    for c in containers:
        res = c.get("resources") if isinstance(c.get("resources"), dict) else {}
        assert isinstance(res, dict)
        req = res.get("requests") if isinstance(res.get("requests"), dict) else {}
        lim = res.get("limits") if isinstance(res.get("limits"), dict) else {}
        assert isinstance(req, dict) and isinstance(lim, dict)
        if any(_qty(q) for q in req.values()) or any(_qty(q) for q in lim.values()):
            any_set = True
        for r in ("cpu", "memory"):
            if not _qty(lim.get(r)) or (r in req and str(req[r]) != str(lim[r])):
                guaranteed = False
    if not any_set:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def _default_pod(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    default_pod_spec(spec)
    spec.setdefault("enableServiceLinks", True)
    # ServiceAccount admission (no token volume: kubelab does not mint service-account tokens yet)
    sa = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec.setdefault("serviceAccountName", sa)
    spec.setdefault("serviceAccount", sa)
    # spec.priority and preemptionPolicy are set by the Priority admission plugin on create
    # (controlplane/apiserver/priority_admission.py), not by defaulting
    # requests default to limits (SetDefaults_Pod)
    for key in ("initContainers", "containers"):
        for c in _dicts(spec.get(key)):
            res = c.get("resources")
            if isinstance(res, dict) and isinstance(res.get("limits"), dict):
                req = res.setdefault("requests", {})
                if isinstance(req, dict):
                    for r, q in res["limits"].items():
                        req.setdefault(r, q)
    # DefaultTolerationSeconds admission
    tolerations = spec.get("tolerations")
    if tolerations is None:
        tolerations = spec["tolerations"] = []
    if isinstance(tolerations, list):
        for key in (_NOT_READY, _UNREACHABLE):
            covered = any(
                isinstance(t, dict)
                and t.get("effect") in (None, "", "NoExecute")
                and (t.get("key") == key or (not t.get("key") and t.get("operator") == "Exists"))
                for t in tolerations
            )
            if not covered:
                tolerations.append(
                    {
                        "key": key,
                        "operator": "Exists",
                        "effect": "NoExecute",
                        "tolerationSeconds": DEFAULT_TOLERATION_SECONDS,
                    }
                )
    status = _dict(obj, "status")
    if status is not None:
        status.setdefault("phase", "Pending")
        status.setdefault("qosClass", qos_class(spec))


def _default_template(spec: Obj) -> None:
    tmpl = _dict(spec, "template")
    if tmpl is None:
        return
    tspec = _dict(tmpl, "spec")
    if tspec is not None:
        default_pod_spec(tspec)


def _default_service(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    svc_type = spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for p in _dicts(spec.get("ports")):
        p.setdefault("protocol", "TCP")
        if "port" in p:
            p.setdefault("targetPort", p["port"])
    if svc_type != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
    if svc_type in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if svc_type == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    if spec.get("sessionAffinity") == "ClientIP":
        cfg = spec.setdefault("sessionAffinityConfig", {})
        if isinstance(cfg, dict):
            cip = cfg.setdefault("clientIP", {})
            if isinstance(cip, dict):
                cip.setdefault("timeoutSeconds", 10800)
    status = _dict(obj, "status")
    if status is not None:
        status.setdefault("loadBalancer", {})


def _default_deployment(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    spec.setdefault("replicas", 1)
    strategy = _dict(spec, "strategy")
    if strategy is not None:
        stype = strategy.setdefault("type", "RollingUpdate")
        if stype == "RollingUpdate":
            ru = _dict(strategy, "rollingUpdate")
            if ru is not None:
                ru.setdefault("maxUnavailable", "25%")
                ru.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _default_template(spec)


def _default_replicaset(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    spec.setdefault("replicas", 1)
    _default_template(spec)
    _status_ints(obj, "replicas")


def _default_daemonset(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    strategy = _dict(spec, "updateStrategy")
    if strategy is not None:
        stype = strategy.setdefault("type", "RollingUpdate")
        if stype == "RollingUpdate":
            ru = _dict(strategy, "rollingUpdate")
            if ru is not None:
                ru.setdefault("maxUnavailable", 1)
                ru.setdefault("maxSurge", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    _default_template(spec)
    _status_ints(obj, "currentNumberScheduled", "numberMisscheduled", "desiredNumberScheduled", "numberReady")


def _default_statefulset(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    strategy = _dict(spec, "updateStrategy")
    if strategy is not None:
        stype = strategy.setdefault("type", "RollingUpdate")
        if stype == "RollingUpdate":
            ru = _dict(strategy, "rollingUpdate")
            if ru is not None:
                ru.setdefault("partition", 0)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"})
    _status_ints(obj, "replicas", "availableReplicas")
    _default_template(spec)


JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"


def _default_job(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is None:
        return
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    _default_template(spec)
    # The job registry generates a selector on the job's uid unless manualSelector is set.
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(meta, dict)
    uid = meta.get("uid")
    if uid and spec.get("manualSelector") is not True and not spec.get("selector"):
        tmpl = spec.get("template")
        if isinstance(tmpl, dict):
            tmeta = _dict(tmpl, "metadata")
            if tmeta is not None:
                labels = _dict(tmeta, "labels")
                if labels is not None:
                    labels.setdefault(JOB_UID_LABEL, uid)
                    labels.setdefault(JOB_NAME_LABEL, meta.get("name", ""))
                    labels.setdefault("controller-uid", uid)
                    labels.setdefault("job-name", meta.get("name", ""))
        spec["selector"] = {"matchLabels": {JOB_UID_LABEL: uid}}


def _default_namespace(obj: Obj) -> None:
    spec = _dict(obj, "spec")
    if spec is not None:
        spec.setdefault("finalizers", ["kubernetes"])
    status = _dict(obj, "status")
    if status is not None:
        status.setdefault("phase", "Active")
    # The NamespaceDefaultLabelName feature: every namespace carries its own name as a label.
    meta = _dict(obj, "metadata")
    if meta is not None and meta.get("name"):
        labels = _dict(meta, "labels")
        if labels is not None:
            labels.setdefault("kubernetes.io/metadata.name", meta["name"])


def _default_node(obj: Obj) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict) and spec.get("podCIDR") and not spec.get("podCIDRs"):
        # podCIDRs[0] always mirrors podCIDR (the v1 conversion keeps them in step)
        spec["podCIDRs"] = [spec["podCIDR"]]
    status = obj.get("status")
    if isinstance(status, dict) and isinstance(status.get("capacity"), dict) and not status.get("allocatable"):
        status["allocatable"] = dict(status["capacity"])


def _default_endpointslice(obj: Obj) -> None:
    for p in _dicts(obj.get("ports")):
        p.setdefault("protocol", "TCP")
        p.setdefault("name", "")


def _default_endpoints(obj: Obj) -> None:
    for subset in _dicts(obj.get("subsets")):
        for p in _dicts(subset.get("ports")):
            p.setdefault("protocol", "TCP")


def _default_event(obj: Obj) -> None:
    obj.setdefault("reportingComponent", "")
    obj.setdefault("reportingInstance", "")


def _default_secret(obj: Obj) -> None:
    obj.setdefault("type", "Opaque")


def _default_networkpolicy(obj: Obj) -> None:
    # SetDefaults_NetworkPolicy: a policy with no policyTypes is an Ingress policy, and also an
    # Egress one when it lists egress rules; every port's protocol defaults to TCP.
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    if not isinstance(spec.get("podSelector"), dict):
        spec["podSelector"] = {}  # a Go struct, never null on the wire
    for rule in _dicts(spec.get("ingress")) + _dicts(spec.get("egress")):
        for p in _dicts(rule.get("ports")):
            p.setdefault("protocol", "TCP")
    if not spec.get("policyTypes"):
        spec["policyTypes"] = ["Ingress", "Egress"] if spec.get("egress") else ["Ingress"]


def drop_type_dependent_fields(resource: Resource, obj: dict[str, Any], old: dict[str, Any]) -> None:
    """On a Service update that changes ``spec.type``, drop what the old type implied.

    Kubernetes' service strategy (``dropTypeDependentFields``) does this so that
    ``kubectl apply`` of ``type: ClusterIP`` over a NodePort service works: allocated node ports,
    ``externalTrafficPolicy`` and ``healthCheckNodePort`` the user did not change are removed
    (and then released by the allocator); for ``ExternalName`` the cluster IP fields too. A
    value the user changed in the same update is kept, so validation can reject it. Call before
    ``apply_defaults``/validation on updates; a no-op for other kinds or unchanged types.
    """
    if resource.plural != "services":
        return
    spec, ospec = obj.get("spec"), old.get("spec")
    if not isinstance(spec, dict) or not isinstance(ospec, dict):
        return
    new_type = spec.get("type") or "ClusterIP"
    old_type = ospec.get("type") or "ClusterIP"
    if new_type == old_type:
        return
    if new_type not in ("NodePort", "LoadBalancer"):
        old_ports = {(p.get("port"), p.get("protocol") or "TCP"): p.get("nodePort") for p in _dicts(ospec.get("ports"))}
        for p in _dicts(spec.get("ports")):
            if p.get("nodePort") and old_ports.get((p.get("port"), p.get("protocol") or "TCP")) == p["nodePort"]:
                del p["nodePort"]
        for key in ("externalTrafficPolicy", "healthCheckNodePort"):
            if key in spec and spec.get(key) == ospec.get(key):
                del spec[key]
    if new_type != "LoadBalancer":
        for key in ("allocateLoadBalancerNodePorts", "loadBalancerClass"):
            if key in spec and spec.get(key) == ospec.get(key):
                del spec[key]
    if new_type == "ExternalName":
        for key in ("clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "internalTrafficPolicy"):
            if key in spec and spec.get(key) == ospec.get(key):
                del spec[key]


def _status_ints(obj: Obj, *names: str) -> None:
    """Status integers Go serializes without ``omitempty``: 0 from creation, as Kubernetes returns them
    (the official clients' typed models reject an object without them)."""
    status = _dict(obj, "status")
    if status is not None:
        for n in names:
            status.setdefault(n, 0)


def _default_cronjob(obj: Obj) -> None:
    # pkg/apis/batch/v1/defaults.go SetDefaults_CronJob; the job template gets the pod defaults
    spec = _dict(obj, "spec")
    if spec is None:
        return
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    jt = _dict(spec, "jobTemplate")
    if jt is not None:
        jspec = _dict(jt, "spec")
        if jspec is not None:
            _default_template(jspec)


def _default_replicationcontroller(obj: Obj) -> None:
    # pkg/apis/core/v1/defaults.go SetDefaults_ReplicationController: selector and labels from the
    # template's labels when empty, one replica
    spec = _dict(obj, "spec")
    if spec is None:
        return
    tmpl = spec.get("template")
    tmeta = tmpl.get("metadata") if isinstance(tmpl, dict) else None
    tlabels = tmeta.get("labels") if isinstance(tmeta, dict) else None
    if isinstance(tlabels, dict) and tlabels:
        if not spec.get("selector"):
            spec["selector"] = dict(tlabels)
        meta = _dict(obj, "metadata")
        if meta is not None and not meta.get("labels"):
            meta["labels"] = dict(tlabels)
    spec.setdefault("replicas", 1)
    _default_template(spec)
    _status_ints(obj, "replicas")


def _default_pdb(obj: Obj) -> None:
    # PodDisruptionBudgetStatus' four int32 fields have no omitempty
    _status_ints(obj, "disruptionsAllowed", "currentHealthy", "desiredHealthy", "expectedPods")


def _default_priorityclass(obj: Obj) -> None:
    # SetDefaults_PriorityClass: preemptionPolicy PreemptLowerPriority
    if not obj.get("preemptionPolicy"):
        obj["preemptionPolicy"] = "PreemptLowerPriority"


_BY_PLURAL: dict[str, Callable[[Obj], None]] = {
    "cronjobs": _default_cronjob,
    "replicationcontrollers": _default_replicationcontroller,
    "pods": _default_pod,
    "services": _default_service,
    "deployments": _default_deployment,
    "replicasets": _default_replicaset,
    "daemonsets": _default_daemonset,
    "statefulsets": _default_statefulset,
    "jobs": _default_job,
    "namespaces": _default_namespace,
    "nodes": _default_node,
    "endpointslices": _default_endpointslice,
    "endpoints": _default_endpoints,
    "events": _default_event,
    "secrets": _default_secret,
    "networkpolicies": _default_networkpolicy,
    "priorityclasses": _default_priorityclass,
    "poddisruptionbudgets": _default_pdb,
}


_BY_PLURAL.update(rbac.DEFAULTS)


def apply_defaults(resource: Resource, obj: dict[str, Any]) -> None:
    """Fill in Kubernetes' defaults for ``resource`` in ``obj`` (in place; idempotent)."""
    fn = _BY_PLURAL.get(resource.plural)
    if fn is not None and isinstance(obj, dict):
        fn(obj)
