"""Discovery documents: ``/version``, ``/api``, ``/apis``, ``/api/v1``, ``/apis/<g>/<v>``.

Role: tell clients which groups, versions, resources, verbs and short names exist, built from
``registry.RESOURCES``. Both forms are served: legacy (``APIVersions``/``APIGroupList``/
``APIResourceList``) and aggregated (``APIGroupDiscoveryList``), the latter only when the Accept
header asks for it, with the exact ``Content-Type`` kubectl requires (v2, or v2beta1 for
kubectl ≤1.29) — see reference/kubectl-api.md §1.2.

Invariants: pure functions of the registry (documents are computed once per app and cached as bytes).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson

from controlplane.api import registry
from controlplane.api.registry import Resource

AGG_V2 = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
AGG_V2BETA1 = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"

# subresource → (group, version, kind, verbs)
_SUBRESOURCES: dict[str, tuple[str, str, str | None, tuple[str, ...]]] = {
    "status": ("", "", None, ("get", "patch", "update")),
    "scale": ("autoscaling", "v1", "Scale", ("get", "patch", "update")),
    "binding": ("", "v1", "Binding", ("create",)),
    "eviction": ("policy", "v1", "Eviction", ("create",)),
    "log": ("", "v1", "Pod", ("get",)),
    "exec": ("", "v1", "PodExecOptions", ("create", "get")),
    "attach": ("", "v1", "PodAttachOptions", ("create", "get")),
    "portforward": ("", "v1", "PodPortForwardOptions", ("create", "get")),
    "finalize": ("", "v1", "Namespace", ("update",)),
    "token": ("authentication.k8s.io", "v1", "TokenRequest", ("create",)),
}


def subresource_verbs(sub: str) -> tuple[str, ...]:
    """The verbs discovery publishes for a subresource (what the server accepts on its path)."""
    entry = _SUBRESOURCES.get(sub)
    return entry[3] if entry is not None else ()


def _sub(res: Resource, sub: str) -> tuple[str, str, str, tuple[str, ...]]:
    group, version, kind, verbs = _SUBRESOURCES.get(sub, ("", "", None, ("get",)))
    if kind is None:  # same kind as the parent (status)
        return res.group, res.version, res.kind, verbs
    return group, version, kind, verbs


def version_info(git_version: str) -> dict[str, str]:
    # minor "33" makes /usr/bin/kubectl's dispatcher run kubectl 1.33 (kubectl-api.md §1.1)
    return {
        "major": "1",
        "minor": "33",
        "gitVersion": git_version,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _named_groups() -> list[tuple[str, str]]:
    return [(g, v) for g, v in registry.groups() if g]


def api_group(group: str) -> dict[str, Any] | None:
    versions = [v for g, v in registry.groups() if g == group]
    if not versions:
        return None
    gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list() -> dict[str, Any]:
    groups = []
    for g, _v in _named_groups():
        doc = api_group(g)
        assert doc is not None
        doc.pop("kind")
        doc.pop("apiVersion")
        groups.append(doc)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def resource_list(group: str, version: str) -> dict[str, Any] | None:
    resources = [r for r in registry.RESOURCES if r.group == group and r.version == version]
    if not resources:
        return None
    items: list[dict[str, Any]] = []
    for r in resources:
        entry: dict[str, Any] = {
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": list(r.verbs),
        }
        if r.short_names:
            entry["shortNames"] = list(r.short_names)
        if r.categories:
            entry["categories"] = list(r.categories)
        items.append(entry)
        for sub in r.subresources:
            g, v, kind, verbs = _sub(r, sub)
            sub_entry: dict[str, Any] = {
                "name": f"{r.plural}/{sub}",
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": list(verbs),
            }
            if (g, v) != (r.group, r.version):
                sub_entry["group"] = g
                sub_entry["version"] = v
            items.append(sub_entry)
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": items,
    }


def _aggregated_resource(r: Resource) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": "Namespaced" if r.namespaced else "Cluster",
        "singularResource": r.singular,
        "verbs": list(r.verbs),
    }
    if r.short_names:
        entry["shortNames"] = list(r.short_names)
    if r.categories:
        entry["categories"] = list(r.categories)
    if r.subresources:
        subs = []
        for sub in r.subresources:
            g, v, kind, verbs = _sub(r, sub)
            subs.append(
                {"subresource": sub, "responseKind": {"group": g, "version": v, "kind": kind}, "verbs": list(verbs)}
            )
        entry["subresources"] = subs
    return entry


def aggregated(core: bool, api_version: str) -> dict[str, Any]:
    """``APIGroupDiscoveryList`` for ``/api`` (core) or ``/apis`` (named groups)."""
    items = []
    pairs = [("", "v1")] if core else _named_groups()
    for g, v in pairs:
        resources = [_aggregated_resource(r) for r in registry.RESOURCES if r.group == g and r.version == v]
        meta: dict[str, Any] = {"creationTimestamp": None}
        if g:
            meta["name"] = g
        items.append({"metadata": meta, "versions": [{"version": v, "resources": resources, "freshness": "Current"}]})
    return {"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items}


def negotiate_aggregated(accept: str) -> str | None:
    """The aggregated content type to answer with, or None for the legacy document.

    Media ranges are taken in the client's order; the first aggregated one we serve wins.
    """
    for part in accept.split(","):
        params = {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in part.split(";")[1:])}
        if params.get("as") != "APIGroupDiscoveryList" or params.get("g") != "apidiscovery.k8s.io":
            continue
        if params.get("v") == "v2":
            return AGG_V2
        if params.get("v") == "v2beta1":
            return AGG_V2BETA1
    return None


@cache
def aggregated_bytes(core: bool, content_type: str) -> bytes:
    version = "apidiscovery.k8s.io/v2" if content_type == AGG_V2 else "apidiscovery.k8s.io/v2beta1"
    return orjson.dumps(aggregated(core, version))
