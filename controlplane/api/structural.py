"""Structural typing of every written object against the OpenAPI schema the server serves.

Role: kube-apiserver decodes each request body into its Go type before anything else happens, so
a value of the wrong JSON type (a string where ``EnvVarSource`` belongs), an integer outside its
Go type (``replicas: 2147483648`` into an ``int32``) or a malformed ``Quantity``/``Time`` never
reaches storage: the decoder refuses it with 400 ``BadRequest``::

    Deployment in version "v1" cannot be handled as a Deployment: json: cannot unmarshal number
    2147483648 into Go struct field DeploymentSpec.spec.replicas of type int32

(``staging/src/k8s.io/apiserver/pkg/endpoints/handlers/rest.go``, ``transformDecodeError``; the
inner text is Go's ``encoding/json`` ``UnmarshalTypeError`` as forked by ``sigs.k8s.io/json``:
the innermost Go struct, then the JSON field names from the root joined by dots — array indices
and map keys are not part of it — then the Go type.) kubelab keeps objects as JSON, so this
module re-creates that decode step from the same ``components.schemas`` that ``/openapi/v3``
serves (``openapi_schemas.json``): one generic checker, no per-kind code.

What is checked, per schema node (``compile_schema``):
- struct (``properties``): a JSON object; fields the schema does not define are skipped (unknown
  fields are pruned or refused by ``fieldValidation`` elsewhere, as Kubernetes does);
- ``additionalProperties`` (Go maps) and ``items`` (Go slices): every value;
- ``integer`` ``int32``/``int64``: an integer within the Go type's range (``1.5`` or ``2^31``
  answer ``number 1.5``/``number 2147483648``, as Go prints the literal);
- ``number``, ``boolean``, ``string``: the JSON type;
- ``int-or-string`` (``intstr.IntOrString``): a string, or an int32;
- ``quantity`` (``resource.Quantity``): a string or a number that parses as a quantity, with
  apimachinery's messages (``quantities must match the regular expression …``);
- ``date-time`` (``metav1.Time``): an RFC 3339 string (Go's ``parsing time …`` message; the tail
  of that message is simplified to the first layout element);
- ``x-kubernetes-preserve-unknown-fields`` (``RawExtension``): anything.
``null`` is accepted everywhere (Go leaves the zero value). Enums are *not* checked here: a Go
client decodes any string into a string enum; the values kube-apiserver refuses ("Unsupported
value", 422) are refused by the per-kind validation (``validation.py``), and the schema lists
them as ``enum`` for ``kubectl explain``.

Errors: the first error in document order wins (Go's decoder keeps the first one). For creates
and updates it is the 400 above (``decode_error``); for json/merge/strategic patches
kube-apiserver reports the decode failure of the patched object as 422 ``Invalid`` on field
``patch`` (``handlers/patch.go``: ``field.Invalid(field.NewPath("patch"), …)``), which
``patch_error`` builds; an apply patch gets the 400 (kube-apiserver's own apply message comes from
structured-merge-diff's typed conversion and is not reproduced). Echoed bodies are bounded
(``_preview``: at most 1,024 characters and 32 levels), however large or deep the request.

Where it runs: ``strategy.check_body`` (every create, update and status/scale write, on the body
as decoded) and ``ResourceOps.patch`` (on the patched object, before ``check_body``) — one line
each; deletes and reads do not run it.

Objects already stored that fail the check (written before it existed) are served as they are:
reads never re-check (reads are hot, and a read cannot make things worse), deletes are never
checked, so such an object can always be removed; any write that stores it again — update,
patch, status or scale — must produce a well-typed object, so the writer has to fix the field.
That is still more lenient than kube-apiserver, which cannot decode such an object at all.

Performance: each schema is compiled once per process into nested closures that walk the object
with no allocation on the success path (exceptions only build the message on failure); the cost
is measured by ``make bench`` (check on vs off, ``KUBELAB_STRUCTURAL_CHECK=off`` turns it off —
for that benchmark only).

Concurrency: checking is pure and lock-free; compiling (once per kind, at its first write) holds a
lock, so no thread sees a half-compiled checker.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable
from datetime import date, datetime
from functools import cache
from typing import Any

import orjson

from controlplane.api import errors
from controlplane.api.openapi import schema_for_kind, schemas
from controlplane.api.registry import Resource

__all__ = [
    "ENABLED",
    "StructuralError",
    "check",
    "compile_schema",
    "decode_error",
    "first_error",
    "patch_error",
    "raise_for_patch",
]

Checker = Callable[[Any], None]

# Off only for the benchmark that measures what the check costs (tests/bench/bench_apiserver.py).
ENABLED = os.environ.get("KUBELAB_STRUCTURAL_CHECK", "on").lower() not in ("off", "0", "false")

_REF_PREFIX = "#/components/schemas/"
_INT_OR_STRING = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}

# apimachinery/pkg/api/resource/quantity.go
_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_QUANTITY_FORMAT_WRONG = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
_QUANTITY_SUFFIXES = {"", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"}
_QUANTITY_EXPONENT = re.compile(r"^[eE][-+]?[0-9]+$")
_GOOD_QUANTITIES: set[Any] = set()  # strings already parsed (bounded; adding is atomic under the GIL)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_RFC3339_LAYOUT = "2006-01-02T15:04:05Z07:00"


class _Mismatch(Exception):
    """A JSON value the Go type cannot hold; ``fields``/``struct`` are filled in on the way up."""

    def __init__(self, value: str, gotype: str) -> None:
        self.value = value
        self.gotype = gotype
        self.struct: str | None = None
        self.fields: list[str] = []

    def message(self) -> str:
        if self.struct is None:
            return f"json: cannot unmarshal {self.value} into Go value of type {self.gotype}"
        path = ".".join(reversed(self.fields))
        return f"json: cannot unmarshal {self.value} into Go struct field {self.struct}.{path} of type {self.gotype}"


class _Hard(Exception):
    """An error of a type's own decoder (Quantity, Time): its text is the whole message."""

    def message(self) -> str:
        return str(self.args[0])


class StructuralError(errors.BadRequest):
    """The 400 of a body its kind's Go type cannot decode; ``detail`` is the decoder's own text."""

    def __init__(self, message: str, detail: str) -> None:
        super().__init__(message)
        self.detail = detail


def _json_kind(v: Any) -> str:
    """How Go's decoder names a JSON value in ``cannot unmarshal <value>``."""
    if isinstance(v, str | date):  # (YAML's unquoted timestamps: strings once in JSON, as in Kubernetes)
        return "string"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    return "null"


def _number_literal(v: int | float) -> str:
    try:
        text = repr(v)
    except ValueError:  # more digits than Python converts: say so rather than print them all
        text = "<an integer too large to print>"
    return "number " + (text if len(text) <= 64 else text[:64] + "...")


def _go_type(schema_name: str) -> str:
    """``io.k8s.api.core.v1.EnvVarSource`` → ``v1.EnvVarSource`` (Go's ``reflect.Type.String``)."""
    parts = schema_name.split(".")
    return f"{parts[-2]}.{parts[-1]}"


# -- leaf checkers ------------------------------------------------------------------------------


def _string(v: Any) -> None:
    if v.__class__ is not str and v is not None and not isinstance(v, date):
        raise _Mismatch(_json_kind(v), "string")


def _byte_string(v: Any) -> None:
    if v.__class__ is not str and v is not None and not isinstance(v, date):
        raise _Mismatch(_json_kind(v), "[]uint8")


def _boolean(v: Any) -> None:
    if v.__class__ is not bool and v is not None:
        raise _Mismatch(_json_kind(v), "bool")


def _number(v: Any) -> None:
    if v.__class__ is not float and v.__class__ is not int and v is not None:
        raise _Mismatch(_json_kind(v), "float64")


def _integer(fmt: str) -> Checker:
    lo, hi = _RANGES.get(fmt, _RANGES["int64"])
    gotype = fmt if fmt in _RANGES else "int64"

    def check(v: Any) -> None:
        if v.__class__ is int:
            if lo <= v <= hi:
                return
            raise _Mismatch(_number_literal(v), gotype)
        if v is None:
            return
        if v.__class__ is float:
            raise _Mismatch(_number_literal(v), gotype)
        raise _Mismatch(_json_kind(v), gotype)

    return check


_INT32 = _integer("int32")


def _int_or_string(v: Any) -> None:
    # intstr.IntOrString.UnmarshalJSON: a quoted value is a string, anything else an int32
    if v.__class__ is str or v is None or isinstance(v, date):
        return
    _INT32(v)


def _quantity(v: Any) -> None:
    # resource.Quantity.UnmarshalJSON: a string, or the raw JSON text of anything else
    if v is None or (v.__class__ is str and v in _GOOD_QUANTITIES):
        return
    if v.__class__ is str:
        text = v.strip()
    elif v.__class__ is int or v.__class__ is float:
        text = repr(v)
    else:
        raise _Hard(_QUANTITY_FORMAT_WRONG)
    m = _QUANTITY_RE.match(text)
    if m is None:
        raise _Hard(_QUANTITY_FORMAT_WRONG)
    number, suffix = m.group(1), m.group(2)
    if suffix not in _QUANTITY_SUFFIXES and not _QUANTITY_EXPONENT.match(suffix):
        raise _Hard("unable to parse quantity's suffix")
    if number.count(".") > 1 or number.strip("+-") in ("", "."):
        raise _Hard("unable to parse quantity's numeric part")
    if v.__class__ is str and len(_GOOD_QUANTITIES) < 4096:  # the same few quantities recur on every pod
        _GOOD_QUANTITIES.add(v)


def _date_time(v: Any) -> None:
    # metav1.Time.UnmarshalJSON: a JSON string, then time.Parse(time.RFC3339, …)
    if isinstance(v, datetime) and v.tzinfo is not None:
        return  # an unquoted YAML timestamp with a zone: an RFC 3339 string in Kubernetes' JSON
    if isinstance(v, date):
        v = v.isoformat()
    if v.__class__ is str:
        if _RFC3339.match(v) is not None:
            try:
                datetime.fromisoformat(v.replace("Z", "+00:00"))
                return
            except ValueError:
                pass
        raise _Hard(f'parsing time "{v}" as "{_RFC3339_LAYOUT}": cannot parse "{v}" as "2006"')
    if v is not None:
        raise _Mismatch(_json_kind(v), "string")


def _anything(v: Any) -> None:
    return None


# -- compilation ---------------------------------------------------------------------------------


class _Compiler:
    """Turns schema nodes into checkers; named schemas are compiled once (they may be recursive)."""

    def __init__(self) -> None:
        self.named: dict[str, Checker] = {}
        self.all = schemas()

    def ref_name(self, schema: dict[str, Any]) -> str | None:
        ref = schema.get("$ref")
        if ref is None:
            all_of = schema.get("allOf")
            if isinstance(all_of, list) and len(all_of) == 1 and isinstance(all_of[0], dict):
                ref = all_of[0].get("$ref")
        if isinstance(ref, str) and ref.startswith(_REF_PREFIX):
            return ref[len(_REF_PREFIX) :]
        return None

    def go_type(self, schema: dict[str, Any]) -> str:
        """The Go type a field of this schema decodes into, as ``reflect.Type.String`` prints it."""
        name = self.ref_name(schema)
        if name == _INT_OR_STRING:
            return "int32"
        if name is not None:
            return _go_type(name)
        t, fmt = schema.get("type"), schema.get("format")
        if t == "array" and isinstance(schema.get("items"), dict):
            return "[]" + self.go_type(schema["items"])
        if t == "object" and isinstance(schema.get("additionalProperties"), dict):
            return "map[string]" + self.go_type(schema["additionalProperties"])
        if t == "integer":
            return str(fmt) if fmt in _RANGES else "int64"
        if t == "number":
            return "float64"
        if t == "boolean":
            return "bool"
        if fmt == "byte":
            return "[]uint8"
        return "string"

    def compile(self, schema: dict[str, Any]) -> Checker:
        name = self.ref_name(schema)
        if name is not None:
            return self.named_checker(name)
        return self.inline(schema, None)

    def named_checker(self, name: str) -> Checker:
        hit = self.named.get(name)
        if hit is not None:
            return hit
        if name == _INT_OR_STRING:
            self.named[name] = _int_or_string
            return _int_or_string
        cell: list[Checker] = []

        def forward(v: Any) -> None:  # stands in while a recursive schema is being compiled
            cell[0](v)

        self.named[name] = forward
        real = self.inline(self.all.get(name, {}), name)
        cell.append(real)
        self.named[name] = real
        return real

    def inline(self, schema: dict[str, Any], name: str | None) -> Checker:
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            return _anything
        t, fmt = schema.get("type"), schema.get("format")
        if fmt == "int-or-string":
            return _int_or_string
        if t == "object" or isinstance(schema.get("properties"), dict):
            props = schema.get("properties")
            if isinstance(props, dict):
                return self.struct(name, props)
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                return self.map(extra)
            return _object_only
        if t == "array":
            items = schema.get("items")
            return self.array(items if isinstance(items, dict) else {}, schema)
        if t == "integer":
            return _integer(str(fmt))
        if t == "number":
            return _number
        if t == "boolean":
            return _boolean
        if t == "string":
            if fmt == "quantity":
                return _quantity
            if fmt == "date-time":
                return _date_time
            if fmt == "byte":
                return _byte_string
            return _string
        return _anything

    def struct(self, name: str | None, props: dict[str, Any]) -> Checker:
        struct_name = name.rsplit(".", 1)[-1] if name else "object"
        gotype = _go_type(name) if name else "struct"
        fields: dict[str, Checker] = {}
        for key, sub in props.items():
            if isinstance(sub, dict):
                checker = self.compile(sub)
                if checker is not _anything:
                    fields[key] = checker
        get = fields.get

        def check(v: Any) -> None:
            if v.__class__ is not dict:
                if v is None:
                    return
                raise _Mismatch(_json_kind(v), gotype)
            for k, x in v.items():
                f = get(k)
                if f is None or (f is _string and x.__class__ is str):
                    continue  # unknown field, or the commonest case (a string) without a call
                try:
                    f(x)
                except _Mismatch as m:
                    if m.struct is None:
                        m.struct = struct_name
                    m.fields.append(k)
                    raise

        return check

    def map(self, extra: dict[str, Any]) -> Checker:
        sub = self.compile(extra)
        gotype = "map[string]" + self.go_type(extra)
        if sub is _string:  # the common map[string]string (labels, annotations, data), inlined

            def check_strings(v: Any) -> None:
                if v.__class__ is not dict:
                    if v is None:
                        return
                    raise _Mismatch(_json_kind(v), gotype)
                for x in v.values():
                    if x.__class__ is not str and x is not None:
                        _string(x)

            return check_strings

        def check(v: Any) -> None:
            if v.__class__ is not dict:
                if v is None:
                    return
                raise _Mismatch(_json_kind(v), gotype)
            for x in v.values():
                sub(x)

        return check

    def array(self, items: dict[str, Any], schema: dict[str, Any]) -> Checker:
        sub = self.compile(items)
        gotype = self.go_type(schema)

        def check(v: Any) -> None:
            if v.__class__ is not list:
                if v is None:
                    return
                raise _Mismatch(_json_kind(v), gotype)
            for x in v:
                sub(x)

        return check


def _object_only(v: Any) -> None:
    if v.__class__ is not dict and v is not None:
        raise _Mismatch(_json_kind(v), "map[string]interface {}")


@cache
def _compiler() -> _Compiler:
    return _Compiler()


# Compilation runs under this lock: a schema being compiled is briefly a forward reference that
# another thread must not call before it is filled in.
_COMPILING = threading.RLock()


def compile_schema(schema_name: str) -> Checker:
    """The checker of one component schema (``io.k8s.api.apps.v1.Deployment``); compiled once."""
    with _COMPILING:
        return _compiler().named_checker(schema_name)


@cache
def _kind_checker(group: str, kind: str) -> Checker | None:
    from controlplane.api.openapi import schema_name

    if schema_for_kind(group, kind) is None:
        return None
    return compile_schema(schema_name(group, kind))


def first_error(res: Resource, obj: Any) -> str | None:
    """The Go decoder's message for the first field of ``obj`` its kind cannot hold, or None."""
    checker = _kind_checker(res.group, res.kind)
    if checker is None:
        return None
    try:
        checker(obj)
    except _Mismatch as m:
        return m.message()
    except _Hard as h:
        return h.message()
    return None


_SHOWN = 1024  # most characters of a patched object echoed in a patch error (bounded, whatever its size)
_PREVIEW_DEPTH = 32  # deeper values are shown as "..." (the preview never recurses without bound)


def _preview(v: Any, limit: int, go: bool = False) -> str:
    """A bounded rendering of a decoded body: compact JSON, or Go's ``%+v`` when ``go``.

    At most ``limit`` characters (then ``...``) and ``_PREVIEW_DEPTH`` levels, whatever the value:
    error messages echo request bodies, which may be huge or nested thousands deep.
    """
    out: list[str] = []
    size = 0

    def emit(s: str) -> bool:
        nonlocal size
        out.append(s)
        size += len(s)
        return size <= limit

    def walk(x: Any, depth: int) -> bool:
        if depth > _PREVIEW_DEPTH:
            return emit("...")
        if isinstance(x, dict):
            if not emit("map[" if go else "{"):
                return False
            items = sorted(x.items(), key=lambda kv: str(kv[0])) if go else list(x.items())
            for i, (k, y) in enumerate(items):
                sep = " " if go else ","
                if not emit((sep if i else "") + (f"{k}:" if go else json.dumps(str(k)) + ":")):
                    return False
                if not walk(y, depth + 1):
                    return False
            return emit("]" if go else "}")
        if isinstance(x, list):
            if not emit("["):
                return False
            for i, y in enumerate(x):
                if (i and not emit(" " if go else ",")) or not walk(y, depth + 1):
                    return False
            return emit("]")
        if go:
            text = "<nil>" if x is None else ("true" if x is True else "false" if x is False else str(x))
            return emit(text if isinstance(x, str) else _scalar(x, text))
        return emit(_scalar(x, json.dumps(x) if not isinstance(x, int | float) or isinstance(x, bool) else ""))

    walk(v, 0)
    text = "".join(out)
    return text if len(text) <= limit else text[:limit] + " ..."


def _scalar(x: Any, text: str) -> str:
    if isinstance(x, int | float) and not isinstance(x, bool):
        try:
            return repr(x)
        except ValueError:  # an integer with more digits than Python prints
            return "<a very large number>"
    return text


def decode_error(res: Resource, obj: Any, detail: str) -> StructuralError:
    """The 400 of ``transformDecodeError``: the body's own kind/version when it names one."""
    kind = obj.get("kind") if isinstance(obj, dict) else None
    if isinstance(kind, str) and kind:
        api_version = obj.get("apiVersion") if isinstance(obj.get("apiVersion"), str) else ""
        version = api_version.rsplit("/", 1)[-1] if api_version else ""
        return StructuralError(f'{kind} in version "{version}" cannot be handled as a {res.kind}: {detail}', detail)
    summary = _preview(obj, 30)
    return StructuralError(
        f"the object provided is unrecognized (must be of type {res.kind}): {detail} ({summary})", detail
    )


def check(res: Resource, obj: Any, body: Any = None) -> None:
    """Raise the 400 kube-apiserver's decoder answers if ``obj`` does not fit its kind's Go type.

    ``body`` is the request body as sent, when ``obj`` is a normalised copy of it: the message
    names the kind and version the body itself named (or summarises the body if it named none).
    """
    if not ENABLED:
        return
    detail = first_error(res, obj)
    if detail is not None:
        raise decode_error(res, obj if body is None else body, detail)


def patch_error(res: Resource, patched: Any, content_type: str, patch: bytes) -> errors.ApiError | None:
    """The error of a patch whose result its kind cannot decode, as kube-apiserver answers it.

    json/merge patches: 422 ``"" is invalid: patch: Invalid value: "<patched object>": <decoder
    message>``; strategic merge: the same with the patch map printed as Go's ``%+v``; apply: the
    create/update 400. None when the result decodes.
    """
    if not ENABLED:
        return None
    detail = first_error(res, patched)
    if detail is None:
        return None
    if content_type == "application/apply-patch+yaml":
        return decode_error(res, patched, detail)
    if content_type == "application/strategic-merge-patch+json":
        try:
            shown = _preview(orjson.loads(patch), _SHOWN, go=True)
        except orjson.JSONDecodeError:  # (too deep for orjson: show the raw text)
            shown = patch[:_SHOWN].decode(errors="replace")
    else:
        shown = _preview(patched, _SHOWN)
    value = json.dumps(shown)
    cause = errors.Cause("patch", f"Invalid value: {value}: {detail}", "FieldValueInvalid")
    return errors.Invalid(f'"" is invalid: patch: {cause.message}', kind="", name="", causes=[cause])


def raise_for_patch(res: Resource, patched: Any, content_type: str, patch: bytes) -> None:
    """Raise ``patch_error``'s answer if the patched object does not decode (the patch path's hook)."""
    err = patch_error(res, patched, content_type, patch)
    if err is not None:
        raise err
