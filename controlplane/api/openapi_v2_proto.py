"""The OpenAPI v2 document in gnostic's protobuf encoding (what kubectl asks ``/openapi/v2`` for).

Role: kubectl (1.27 for everything it validates, patches and explains; 1.28+ for
``explain --output=plaintext-openapiv2`` and as a fallback when v3 fails) requests
``/openapi/v2`` with ``Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`` and
unmarshals the body into gnostic's ``openapi.v2.Document`` (github.com/google/gnostic-models
``openapiv2/OpenAPIv2.proto``), then walks it with kube-openapi ``pkg/util/proto`` (models for
``explain`` and strategic-merge patch metadata) and cli-runtime's ``QueryParamVerifier`` (whether a
kind's ``patch`` operation takes ``fieldValidation``, i.e. whether the server validates). This module
turns the JSON document of ``openapi_v2`` (one schema source with v3) into that message.

Encoding: a hand-written proto3 writer (varints, length-delimited fields from ``protowire``): fields at
their default (empty string, false, 0, empty list) are omitted as proto3 does, except members of a
``oneof`` (``AdditionalPropertiesItem.boolean`` false is written). Free-form values (``default``,
``enum`` members, ``example`` and every ``x-…`` vendor extension) are gnostic ``Any`` messages whose
``yaml`` field holds the value; we write it as JSON text, which is YAML (kube-openapi and
cli-runtime read it with ``yaml.Unmarshal``). Field numbers are the ``.proto``'s; map-like objects
are repeated ``Named…`` pairs in the JSON document's (sorted) key order.

kube-openapi's reader rejects a whole document for one malformed schema (an array without
``items``, a ``$ref`` beside a ``type``, a reference to an unknown definition) and kubectl 1.27 then
fails every command that loads it; ``openapi_v2._schema`` produces none of these and the tests
decode the result and check every reference.

Invariants: deterministic (same JSON document, same bytes); built once per process (cached).
Pure; thread-safe after first use (a race only builds twice).
"""

from __future__ import annotations

import hashlib
import struct
from functools import cache
from typing import Any

import orjson

from controlplane.api import openapi_v2, protowire

__all__ = ["document", "encode_document", "etag"]

_VARINT, _I64, _LEN = protowire.VARINT, protowire.I64, protowire.LEN
_varint = protowire.varint


class _Msg:
    """A message being written: fields appended in field-number order by the caller."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def key(self, field: int, wire: int) -> None:
        self.buf += _varint(field << 3 | wire)

    def raw(self, field: int, data: bytes) -> None:
        """A length-delimited field, written even when empty (oneof members, set sub-messages)."""
        self.key(field, _LEN)
        self.buf += _varint(len(data))
        self.buf += data

    def string(self, field: int, value: Any) -> None:
        if isinstance(value, str) and value:
            self.raw(field, value.encode())

    def strings(self, field: int, values: Any) -> None:
        if isinstance(values, list):
            for v in values:
                if isinstance(v, str):
                    self.raw(field, v.encode())  # repeated: empty strings are elements too

    def boolean(self, field: int, value: Any, *, always: bool = False) -> None:
        if value is True or (always and value is False):
            self.key(field, _VARINT)
            self.buf += b"\x01" if value else b"\x00"

    def int64(self, field: int, value: Any) -> None:
        if isinstance(value, int) and not isinstance(value, bool) and value:
            self.key(field, _VARINT)
            self.buf += _varint(value)

    def double(self, field: int, value: Any) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool) and value:
            self.key(field, _I64)
            self.buf += struct.pack("<d", float(value))

    def message(self, field: int, sub: _Msg | None) -> None:
        if sub is not None:
            self.raw(field, bytes(sub.buf))

    def bytes(self) -> bytes:
        return bytes(self.buf)


def _any(value: Any) -> _Msg:
    """gnostic ``Any``: the value as YAML text (field 2); JSON is YAML."""
    m = _Msg()
    m.string(2, orjson.dumps(value).decode())
    return m


def _named(name: str, value: _Msg | None) -> _Msg:
    m = _Msg()
    m.string(1, name)
    m.message(2, value)
    return m


def _extensions(m: _Msg, field: int, obj: dict[str, Any]) -> None:
    for k, v in obj.items():
        if k.startswith("x-"):
            m.message(field, _named(k, _any(v)))


def _schema(s: Any) -> _Msg:
    """``Schema`` (field numbers of OpenAPIv2.proto ``message Schema``)."""
    m = _Msg()
    if not isinstance(s, dict):
        return m
    m.string(1, s.get("$ref"))
    m.string(2, s.get("format"))
    m.string(3, s.get("title"))
    m.string(4, s.get("description"))
    if "default" in s:
        m.message(5, _any(s["default"]))
    m.double(6, s.get("multipleOf"))
    m.double(7, s.get("maximum"))
    m.boolean(8, s.get("exclusiveMaximum"))
    m.double(9, s.get("minimum"))
    m.boolean(10, s.get("exclusiveMinimum"))
    m.int64(11, s.get("maxLength"))
    m.int64(12, s.get("minLength"))
    m.string(13, s.get("pattern"))
    m.int64(14, s.get("maxItems"))
    m.int64(15, s.get("minItems"))
    m.boolean(16, s.get("uniqueItems"))
    m.int64(17, s.get("maxProperties"))
    m.int64(18, s.get("minProperties"))
    m.strings(19, s.get("required"))
    for v in s.get("enum") or []:
        m.message(20, _any(v))
    extra = s.get("additionalProperties")
    if isinstance(extra, dict):
        item = _Msg()
        item.message(1, _schema(extra))
        m.message(21, item)
    elif isinstance(extra, bool):
        item = _Msg()
        item.boolean(2, extra, always=True)
        m.message(21, item)
    t = s.get("type")
    if isinstance(t, str | list):
        ti = _Msg()
        ti.strings(1, [t] if isinstance(t, str) else t)
        m.message(22, ti)
    items = s.get("items")
    if isinstance(items, dict | list):
        ii = _Msg()
        for sub in items if isinstance(items, list) else [items]:
            ii.message(1, _schema(sub))
        m.message(23, ii)
    for sub in s.get("allOf") or []:
        m.message(24, _schema(sub))
    props = s.get("properties")
    if isinstance(props, dict):
        pm = _Msg()
        for name, sub in props.items():
            pm.message(1, _named(name, _schema(sub)))
        m.message(25, pm)
    m.string(26, s.get("discriminator"))
    m.boolean(27, s.get("readOnly"))
    if "example" in s:
        m.message(30, _any(s["example"]))
    _extensions(m, 31, s)
    return m


def _non_body(p: dict[str, Any]) -> _Msg:
    """``NonBodyParameter`` holding a query (3), path (4) or header (1) sub-schema."""
    sub = _Msg()
    where = p.get("in")
    if where == "query":
        # QueryParameterSubSchema: 1 required, 2 in, 3 description, 4 name, 5 allowEmptyValue,
        # 6 type, 7 format, 20 uniqueItems, 23 vendor extensions
        sub.boolean(1, p.get("required"))
        sub.string(2, where)
        sub.string(3, p.get("description"))
        sub.string(4, p.get("name"))
        sub.boolean(5, p.get("allowEmptyValue"))
        sub.string(6, p.get("type"))
        sub.string(7, p.get("format"))
        sub.boolean(20, p.get("uniqueItems"))
        _extensions(sub, 23, p)
        field = 3
    else:
        # Path (4) and header (1) sub-schemas share the layout: 1 required, 2 in, 3 description,
        # 4 name, 5 type, 6 format, 19 uniqueItems, 22 vendor extensions
        sub.boolean(1, p.get("required"))
        sub.string(2, where)
        sub.string(3, p.get("description"))
        sub.string(4, p.get("name"))
        sub.string(5, p.get("type"))
        sub.string(6, p.get("format"))
        sub.boolean(19, p.get("uniqueItems"))
        _extensions(sub, 22, p)
        field = 4 if where == "path" else 1
    nb = _Msg()
    nb.message(field, sub)
    return nb


def _parameter_item(p: dict[str, Any]) -> _Msg:
    """``ParametersItem`` → ``Parameter`` → body (1) or non-body (2)."""
    param = _Msg()
    if p.get("in") == "body":
        body = _Msg()
        body.string(1, p.get("description"))
        body.string(2, p.get("name"))
        body.string(3, "body")
        body.boolean(4, p.get("required"))
        body.message(5, _schema(p.get("schema")))
        _extensions(body, 6, p)
        param.message(1, body)
    else:
        param.message(2, _non_body(p))
    item = _Msg()
    item.message(1, param)
    return item


def _responses(responses: dict[str, Any]) -> _Msg:
    rs = _Msg()
    for code, r in responses.items():
        resp = _Msg()
        resp.string(1, r.get("description"))
        if isinstance(r.get("schema"), dict):
            si = _Msg()
            si.message(1, _schema(r["schema"]))
            resp.message(2, si)
        rv = _Msg()
        rv.message(1, resp)
        rs.message(1, _named(code, rv))
    return rs


def _operation(op: dict[str, Any]) -> _Msg:
    m = _Msg()
    m.strings(1, op.get("tags"))
    m.string(2, op.get("summary"))
    m.string(3, op.get("description"))
    m.string(5, op.get("operationId"))
    m.strings(6, op.get("produces"))
    m.strings(7, op.get("consumes"))
    for p in op.get("parameters") or []:
        m.message(8, _parameter_item(p))
    if isinstance(op.get("responses"), dict):
        m.message(9, _responses(op["responses"]))
    m.strings(10, op.get("schemes"))
    m.boolean(11, op.get("deprecated"))
    _extensions(m, 13, op)
    return m


_METHOD_FIELDS = {"get": 2, "put": 3, "post": 4, "delete": 5, "options": 6, "head": 7, "patch": 8}


def _path_item(item: dict[str, Any]) -> _Msg:
    m = _Msg()
    for method, field in _METHOD_FIELDS.items():
        op = item.get(method)
        if isinstance(op, dict):
            m.message(field, _operation(op))
    for p in item.get("parameters") or []:
        m.message(9, _parameter_item(p))
    _extensions(m, 10, item)
    return m


def encode_document(doc: dict[str, Any]) -> bytes:
    """A Swagger 2.0 JSON document as a gnostic ``openapi.v2.Document`` message."""
    m = _Msg()
    m.string(1, doc.get("swagger"))
    info = doc.get("info") or {}
    im = _Msg()
    im.string(1, info.get("title"))
    im.string(2, info.get("version"))
    im.string(3, info.get("description"))
    m.message(2, im)
    m.string(3, doc.get("host"))
    m.string(4, doc.get("basePath"))
    m.strings(5, doc.get("schemes"))
    m.strings(6, doc.get("consumes"))
    m.strings(7, doc.get("produces"))
    paths = _Msg()
    for name, item in (doc.get("paths") or {}).items():
        paths.message(2, _named(name, _path_item(item)))
    m.message(8, paths)
    defs = _Msg()
    for name, schema in (doc.get("definitions") or {}).items():
        defs.message(1, _named(name, _schema(schema)))
    m.message(9, defs)
    for req in doc.get("security") or []:
        sr = _Msg()
        for name, scopes in req.items():
            arr = _Msg()
            arr.strings(1, scopes)
            sr.message(1, _named(name, arr))
        m.message(12, sr)
    sec_defs = doc.get("securityDefinitions")
    if isinstance(sec_defs, dict):
        sd = _Msg()
        for name, d in sec_defs.items():
            item = _Msg()
            if d.get("type") == "apiKey":
                key = _Msg()
                key.string(1, "apiKey")
                key.string(2, d.get("name"))
                key.string(3, d.get("in"))
                key.string(4, d.get("description"))
                item.message(2, key)
            elif d.get("type") == "basic":
                basic = _Msg()
                basic.string(1, "basic")
                basic.string(2, d.get("description"))
                item.message(1, basic)
            sd.message(1, _named(name, item))
        m.message(13, sd)
    _extensions(m, 16, doc)
    return m.bytes()


@cache
def document() -> bytes:
    """The served v2 document as protobuf (from ``openapi_v2.document_bytes()``)."""
    return encode_document(orjson.loads(openapi_v2.document_bytes()))


@cache
def etag() -> str:
    """The quoted ETag of the protobuf document (kube-openapi's handler: a hash of the bytes)."""
    return '"' + hashlib.sha512(document()).hexdigest().upper() + '"'
