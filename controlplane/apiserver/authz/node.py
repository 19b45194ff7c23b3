"""The Node authorizer: a kubelet may read only what the pods bound to its node need.

Role: kube-apiserver's ``plugin/pkg/auth/authorizer/node/node_authorizer.go`` in small. A user
``system:node:<name>`` in group ``system:nodes`` is a node. ``NodeGraph`` keeps, for every pod with
``spec.nodeName``, the Secrets, ConfigMaps, PersistentVolumeClaims and ServiceAccount it refers to
(volumes, projected sources, env/envFrom, imagePullSecrets), fed from the watch cache. Then:

- ``get`` of a Secret/ConfigMap/PVC (and ``create`` of ``serviceaccounts/token``) is allowed only
  when a pod on that node references the object — else ``no relationship found between node
  '<node>' and this object``; list/watch of those kinds is refused (no relationship of a
  collection can be shown);
- Leases: only ``kube-node-lease/<node>``;
- anything else: the rules of the ``system:node`` ClusterRole (``bootstrappolicy.NodeRules``), with
  NodeRestriction admission narrowing writes to the node's own objects.

Requests of other users get no opinion (the next authorizer decides).

Concurrency: ``apply`` runs on the event loop; ``authorize`` on the loop; a lock guards the maps.
"""

from __future__ import annotations

import threading
from typing import Any

from controlplane.apiserver.auth import RequestAttributes, UserInfo
from controlplane.apiserver.authz.bootstrap import node_rules
from controlplane.apiserver.authz.rbac import rules_allow

Obj = dict[str, Any]
NODE_PREFIX = "system:node:"
NODES_GROUP = "system:nodes"
# (kind, namespace, name) of what a pod references
Ref = tuple[str, str, str]


def node_name_of(user: UserInfo) -> str | None:
    """The node a user is, or None (kube-apiserver's ``nodeidentifier``)."""
    if NODES_GROUP not in user.groups or not user.name.startswith(NODE_PREFIX):
        return None
    return user.name[len(NODE_PREFIX) :] or None


def pod_references(pod: Obj) -> set[Ref]:
    """Everything a pod makes its node read: secrets, configmaps, pvcs and its service account."""
    ns = str((pod.get("metadata") or {}).get("namespace") or "")
    spec = pod.get("spec") or {}
    refs: set[Ref] = {("serviceaccounts", ns, str(spec.get("serviceAccountName") or "default"))}

    def add(kind: str, name: Any) -> None:
        if isinstance(name, str) and name:
            refs.add((kind, ns, name))

    for s in spec.get("imagePullSecrets") or []:
        if isinstance(s, dict):
            add("secrets", s.get("name"))
    for v in spec.get("volumes") or []:
        if not isinstance(v, dict):
            continue
        add("secrets", (v.get("secret") or {}).get("secretName"))
        add("configmaps", (v.get("configMap") or {}).get("name"))
        add("persistentvolumeclaims", (v.get("persistentVolumeClaim") or {}).get("claimName"))
        for src in (v.get("projected") or {}).get("sources") or []:
            if isinstance(src, dict):
                add("secrets", (src.get("secret") or {}).get("name"))
                add("configmaps", (src.get("configMap") or {}).get("name"))
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for c in spec.get(key) or []:
            if not isinstance(c, dict):
                continue
            for env in c.get("env") or []:
                vf = (env.get("valueFrom") or {}) if isinstance(env, dict) else {}
                add("secrets", (vf.get("secretKeyRef") or {}).get("name"))
                add("configmaps", (vf.get("configMapKeyRef") or {}).get("name"))
            for ef in c.get("envFrom") or []:
                if isinstance(ef, dict):
                    add("secrets", (ef.get("secretRef") or {}).get("name"))
                    add("configmaps", (ef.get("configMapRef") or {}).get("name"))
    return refs


class NodeGraph:
    """pods by ``spec.nodeName`` → what they reference (reference-counted per node)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pods: dict[tuple[str, str], tuple[str, set[Ref]]] = {}  # (ns, name) → (node, refs)
        self._edges: dict[str, dict[Ref, int]] = {}  # node → ref → number of pods

    def apply(self, pod: Obj, deleted: bool) -> None:
        md = pod.get("metadata") or {}
        key = (str(md.get("namespace") or ""), str(md.get("name") or ""))
        node = str((pod.get("spec") or {}).get("nodeName") or "")
        with self._lock:
            old = self._pods.pop(key, None)
            if old is not None:
                edges = self._edges.get(old[0], {})
                for ref in old[1]:
                    n = edges.get(ref, 0) - 1
                    if n > 0:
                        edges[ref] = n
                    else:
                        edges.pop(ref, None)
            if deleted or not node:
                return
            refs = pod_references(pod)
            self._pods[key] = (node, refs)
            edges = self._edges.setdefault(node, {})
            for ref in refs:
                edges[ref] = edges.get(ref, 0) + 1

    def forget(self, namespace: str, name: str) -> None:
        self.apply({"metadata": {"namespace": namespace, "name": name}}, True)

    def reset(self) -> None:
        with self._lock:
            self._pods.clear()
            self._edges.clear()

    def has(self, node: str, ref: Ref) -> bool:
        with self._lock:
            return ref in self._edges.get(node, {})

    def pod_node(self, namespace: str, name: str) -> str | None:
        with self._lock:
            entry = self._pods.get((namespace, name))
            return entry[0] if entry else None


_GRAPH_KINDS = {"secrets", "configmaps", "persistentvolumeclaims"}


class NodeAuthorizer:
    def __init__(self, graph: NodeGraph) -> None:
        self.graph = graph
        self.rules = node_rules()

    def authorize(self, user: UserInfo, attrs: RequestAttributes) -> tuple[bool, str]:
        node = node_name_of(user)
        if node is None:
            return False, ""
        if not attrs.resource_request:
            return False, ""
        no_rel = f"no relationship found between node '{node}' and this object"
        if attrs.group == "" and attrs.resource in _GRAPH_KINDS and not attrs.subresource:
            if attrs.verb != "get" or not attrs.name:
                return False, "can only get individual resources of this type"
            if self.graph.has(node, (attrs.resource, attrs.namespace, attrs.name)):
                return True, ""
            return False, no_rel
        if attrs.group == "" and attrs.resource == "serviceaccounts" and attrs.subresource == "token":
            if attrs.verb != "create":
                return False, "can only create tokens for individual service accounts"
            if self.graph.has(node, ("serviceaccounts", attrs.namespace, attrs.name)):
                return True, ""
            return False, no_rel
        if attrs.group == "coordination.k8s.io" and attrs.resource == "leases":
            if attrs.namespace != "kube-node-lease" or (attrs.name and attrs.name != node):
                return False, "can only access node lease with the same name as the requesting node"
            if attrs.verb not in ("get", "create", "update", "patch", "delete"):
                return False, "can only get, create, update, patch, or delete a node lease"
            return True, ""
        if rules_allow(self.rules, attrs):
            return True, ""
        return False, ""
