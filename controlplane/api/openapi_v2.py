"""The OpenAPI v2 (Swagger 2.0) document, in JSON, derived from the v3 documents.

Role: ``GET /openapi/v2`` with ``Accept: application/json`` (older tools, the official clients'
generators, ``curl``) gets one Swagger 2.0 document covering every served group-version, as
kube-apiserver serves it: ``definitions`` are the same schemas the v3 documents carry (one
source, ``openapi_schemas.json``) with ``#/components/schemas/X`` references rewritten to
``#/definitions/X`` and v3's ``allOf: [$ref]`` wrappers unwrapped to plain ``$ref`` (v2 has no
sibling keywords next to a reference); ``paths`` are the v3 paths with each operation's parameters
flattened (``schema.type`` → ``type``), its request body turned into an ``in: body`` parameter and
its responses given a single ``schema`` (with ``consumes``/``produces`` lists instead of per-media
type content).

kubectl itself asks for ``/openapi/v2`` in protobuf: ``openapi_v2_proto`` encodes this same
document in gnostic's message.

Invariants: deterministic (sorted keys) and built once per process. Pure; thread-safe after first
use (a race only builds twice).
"""

from __future__ import annotations

import copy
import hashlib
import json
from functools import cache
from typing import Any

from controlplane.api import openapi
from controlplane.api.registry import groups

_V3_PREFIX = "#/components/schemas/"
_V2_PREFIX = "#/definitions/"
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def _schema(value: Any) -> Any:
    """A v3 schema (or any value inside one) in v2 form."""
    if isinstance(value, list):
        return [_schema(v) for v in value]
    if not isinstance(value, dict):
        return value
    ref = value.get("$ref")
    if isinstance(ref, str):
        return {"$ref": _V2_PREFIX + ref.removeprefix(_V3_PREFIX)}
    all_of = value.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict) and "$ref" in all_of[0]:
        # ``{"allOf": [{"$ref": …}], "default": {}, "description": …}``: kube-apiserver's v2 writes
        # the reference with its description beside it, and no default
        out: dict[str, Any] = _schema(all_of[0])
        if "description" in value:
            out["description"] = value["description"]
        return out
    return {k: _schema(v) for k, v in value.items()}


def _parameter(p: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in p.items() if k != "schema"}
    schema = p.get("schema")
    if isinstance(schema, dict):
        out.update({k: v for k, v in schema.items() if k in ("type", "uniqueItems", "format")})
    return out


def _operation(op: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: copy.deepcopy(v) for k, v in op.items() if k not in ("requestBody", "responses", "parameters")
    }
    params = [_parameter(p) for p in op.get("parameters") or []]
    body = op.get("requestBody")
    if isinstance(body, dict):
        content = body.get("content") or {}
        out["consumes"] = sorted(content)
        first: dict[str, Any] = next(iter(content.values()), {})
        params.insert(0, {"name": "body", "in": "body", "required": True, "schema": _schema(first.get("schema"))})
    else:
        out["consumes"] = ["*/*"]
    out["parameters"] = params
    produces: set[str] = set()
    responses: dict[str, Any] = {}
    for code, resp in (op.get("responses") or {}).items():
        r: dict[str, Any] = {"description": resp.get("description", "")}
        content = resp.get("content") or {}
        produces.update(content)
        if content:
            r["schema"] = _schema(next(iter(content.values())).get("schema"))
        responses[code] = r
    out["produces"] = sorted(produces) or ["application/json"]
    out["responses"] = responses
    out["schemes"] = ["https"]
    return out


@cache
def document_bytes() -> bytes:
    """The whole v2 document, serialized."""
    paths: dict[str, Any] = {}
    definitions: dict[str, Any] = {}
    for group, version in groups():
        v3 = openapi.v3_document(f"apis/{group}/{version}" if group else f"api/{version}") or {}
        for path, item in (v3.get("paths") or {}).items():
            v2_item: dict[str, Any] = {}
            for key, value in item.items():
                if key in _METHODS:
                    v2_item[key] = _operation(value)
                elif key == "parameters":
                    v2_item[key] = [_parameter(p) for p in value]
                else:
                    v2_item[key] = copy.deepcopy(value)
            paths[path] = v2_item
        for name, schema in ((v3.get("components") or {}).get("schemas") or {}).items():
            definitions[name] = _schema(schema)
    doc = {
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "definitions": definitions,
        "security": [{"BearerToken": []}],
        "securityDefinitions": {
            "BearerToken": {
                "description": "Bearer Token authentication",
                "in": "header",
                "name": "authorization",
                "type": "apiKey",
            }
        },
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


@cache
def etag() -> str:
    """The quoted ETag of :func:`document_bytes` (a hash of the exact bytes)."""
    return '"' + hashlib.sha512(document_bytes()).hexdigest().upper() + '"'


def wants_json(accept: str) -> bool:
    """Whether an ``Accept`` header asks for the JSON document rather than protobuf.

    kubectl asks for protobuf first (``application/com.github.proto-openapi.spec.v2…+protobuf``);
    JSON goes to whoever lists ``application/json`` (or ``*/*``, or nothing) before any protobuf type.
    """
    if not accept.strip():
        return True  # kube-apiserver's default is JSON
    for part in accept.split(","):
        media = part.split(";", 1)[0].strip().lower()
        if "protobuf" in media:
            return False
        if media in ("application/json", "application/*", "*/*"):
            return True
    return False
