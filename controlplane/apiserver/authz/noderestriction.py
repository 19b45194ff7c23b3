"""The NodeRestriction admission plugin (``plugin/pkg/admission/noderestriction/admission.go``).

Role: a node (``system:node:<name>`` in ``system:nodes``) may
- create or modify only its own Node, and may not set or change labels under
  ``node-restriction.kubernetes.io/`` (nor add or remove ``kubernetes.io/`` … labels outside the
  allowed set — kubelab keeps to the reserved prefix);
- write only its own Lease (the Node authorizer already says so);
- update or patch the status of, delete, or evict only pods bound to it;
- create only mirror pods (annotation ``kubernetes.io/config.mirror``) bound to itself, which
  reference no Secret, ConfigMap, PVC or ServiceAccount token.

``check_request`` decides what the request attributes alone settle (before any body is read);
``admit`` looks at the object of a create/update. Refusals are 403 ``Forbidden`` worded as
Kubernetes' ``admission.NewForbidden``: ``nodes "kl-node2" is forbidden: node "kl-node1" is not
allowed to modify node "kl-node2"``.

Other users are untouched. Pure apart from reading the Node authorizer's graph; thread-safe.
"""

from __future__ import annotations

from typing import Any

from controlplane.api import errors, registry
from controlplane.apiserver.auth import RequestAttributes, UserInfo
from controlplane.apiserver.authz.node import NodeGraph, node_name_of

Obj = dict[str, Any]
RESTRICTED_PREFIX = "node-restriction.kubernetes.io/"
MIRROR = "kubernetes.io/config.mirror"


def _forbidden(resource: str, name: str, detail: str, group: str = "") -> errors.Forbidden:
    qualified = f"{resource}.{group}" if group else resource
    what = f'{qualified} "{name}"' if name else qualified
    return errors.Forbidden(f"{what} is forbidden: {detail}", kind=resource, name=name, group=group)


class NodeRestriction:
    def __init__(self, graph: NodeGraph) -> None:
        self.graph = graph

    def check_request(self, user: UserInfo, attrs: RequestAttributes) -> None:
        node = node_name_of(user)
        if node is None or not attrs.resource_request or attrs.group != "":
            return
        if attrs.resource == "nodes" and attrs.verb in ("update", "patch", "delete") and attrs.name != node:
            raise _forbidden("nodes", attrs.name, f'node "{node}" is not allowed to modify node "{attrs.name}"')
        if attrs.resource == "pods" and attrs.name:
            bound = self.graph.pod_node(attrs.namespace, attrs.name)
            if attrs.subresource == "status" and attrs.verb in ("update", "patch") and bound != node:
                raise _forbidden(
                    "pods",
                    attrs.name,
                    f'node "{node}" can only update pod status for pods with spec.nodeName set to itself',
                )
            if attrs.subresource == "" and attrs.verb == "delete" and bound != node:
                raise _forbidden(
                    "pods", attrs.name, f'node "{node}" can only delete pods with spec.nodeName set to itself'
                )
            if attrs.subresource == "eviction" and bound != node:
                raise _forbidden(
                    "pods", attrs.name, f'node "{node}" can only evict pods with spec.nodeName set to itself'
                )

    def admit(self, res: registry.Resource, obj: Obj, old: Obj | None, user: UserInfo | None) -> None:
        node = node_name_of(user) if user is not None else None
        if node is None:
            return
        md = obj.get("metadata") or {}
        name = str(md.get("name") or "")
        if res is registry.NODES:
            if name != node:
                raise _forbidden("nodes", name, f'node "{node}" is not allowed to modify node "{name}"')
            new_labels = md.get("labels") or {}
            old_labels = ((old or {}).get("metadata") or {}).get("labels") or {}
            changed = sorted(
                k
                for k in set(new_labels) | set(old_labels)
                if k.startswith(RESTRICTED_PREFIX) or k.split("/", 1)[0].endswith("." + RESTRICTED_PREFIX[:-1])
                if new_labels.get(k) != old_labels.get(k)
            )
            if changed:
                verb = "modify" if old is not None else "set"
                raise _forbidden("nodes", name, f"is not allowed to {verb} labels: {', '.join(changed)}")
        elif res is registry.PODS and old is None:
            self._admit_pod_create(node, obj, name)

    def _admit_pod_create(self, node: str, pod: Obj, name: str) -> None:
        md = pod.get("metadata") or {}
        if MIRROR not in (md.get("annotations") or {}):
            raise _forbidden(
                "pods", name, f'pod does not have "{MIRROR}" annotation, node "{node}" can only create mirror pods'
            )
        spec = pod.get("spec") or {}
        if spec.get("nodeName") != node:
            raise _forbidden("pods", name, f'node "{node}" can only create pods with spec.nodeName set to itself')
        if spec.get("serviceAccountName"):
            raise _forbidden("pods", name, f'node "{node}" can not create pods that reference a service account')
        for v in spec.get("volumes") or []:
            if isinstance(v, dict) and any(
                k in v for k in ("secret", "configMap", "persistentVolumeClaim", "projected")
            ):
                raise _forbidden(
                    "pods",
                    name,
                    f'node "{node}" can not create pods that reference secrets, configmaps, or persistentvolumeclaims',
                )
