"""Request-decoding limits: the one place that bounds the work and memory one request may cost.

Role: every request body, patch and query parameter the API server decodes goes through the
functions here (``json_loads``, ``yaml_load``, ``query_int``), every value echoed back in an error
message goes through ``show``/``echo``, and the HTTP layer reads its header limits from here. A
new decoder that does not use this module is the bug to look for.

The limits, and the Kubernetes behaviour each one follows:

``MAX_BODY_BYTES`` = 3 MiB
    A request body larger than this is refused with 413 before it is read completely
    (kube-apiserver's ``MaxRequestBodyBytes``, k8s.io/apiserver/pkg/server/config.go: 3 MB).
``MAX_YAML_EXPANSION`` = ``MAX_BODY_BYTES``
    A YAML document whose aliases would expand to more than this (estimated as JSON bytes) is
    refused while it is composed, before anything is expanded: "yaml: document contains excessive
    aliasing". Kubernetes' YAML decoder (go-yaml, behind sigs.k8s.io/yaml) bounds the same thing
    with ``allowedAliasRatio`` in decode.go (the fix for CVE-2019-11253, "billion laughs"). An anchor
    that contains an alias of itself is refused as go-yaml refuses it ("anchor … value contains
    itself").
``MAX_DEPTH`` = 100
    JSON and YAML bodies and every patch document may nest at most this deep. Go's decoders stop at
    10000 (encoding/json's ``maxNestingDepth``; go-yaml's "exceeded max depth of 10000"); Python
    recursion (1000 frames) and orjson's encoder (254 levels) cannot go that far, and no
    Kubernetes object nests deeper than a few dozen levels. The check costs two ``bytes.count``
    calls for an ordinary body: a document with fewer than ``MAX_DEPTH`` brackets cannot be deeper,
    so only bodies with many brackets are walked (iteratively, never recursively). orjson refuses
    anything deeper than 1024 on its own.
``MAX_ECHO_CHARS`` = 256
    A value quoted into an error message ("Invalid value: …") is cut to this many characters and
    " ..." appended — the marker kube-apiserver's ``summarizeData`` uses when it quotes a body in a
    decode error (k8s.io/apiserver/pkg/endpoints/handlers/rest.go, 30 bytes there). apimachinery
    itself never quotes a value it calls too long (``field.TooLong``: "<value omitted>",
    pkg/util/validation/field/errors.go); here every echo is bounded, so no request can make an
    error message larger than a few KB. The rendering stops as soon as the bound is reached, so
    even a value shared many times over (a YAML alias) is never expanded to print it.
``MAX_HEADER_BYTES`` = 1 MiB
    A request whose header section is larger is answered ``431 Request Header Fields Too Large`` and
    the connection closed (Go's net/http ``DefaultMaxHeaderBytes``, which kube-apiserver keeps).
``READ_HEADER_TIMEOUT`` = 32 s
    A connection that has not finished sending a request's headers this long after it opened (or
    after the request began) is closed (kube-apiserver's ``ReadHeaderTimeout: 32 * time.Second`` in
    k8s.io/apiserver/pkg/server/secure_serving.go).
Integer query parameters (``timeoutSeconds``, ``limit``, ``gracePeriodSeconds``)
    are Go ``int64``s in Kubernetes: a value outside that range is a 400, as ``strconv.ParseInt``'s
    "value out of range" is there; never an ``OverflowError`` further in.

Invariants: every function here either returns a value within the limits or raises
``LimitExceeded``/``yaml.YAMLError``/``errors.BadRequest``; none recurses on input nesting.

Concurrency: pure functions; the YAML loader is one object per call. Thread-safe.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import yaml
from yaml.composer import ComposerError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from controlplane.api import errors

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_DEPTH",
    "MAX_ECHO_CHARS",
    "MAX_HEADER_BYTES",
    "MAX_YAML_EXPANSION",
    "READ_HEADER_TIMEOUT",
    "LimitExceeded",
    "check_depth",
    "echo",
    "json_loads",
    "query_int",
    "show",
    "yaml_load",
]

MAX_BODY_BYTES = 3 * 1024 * 1024
MAX_YAML_EXPANSION = MAX_BODY_BYTES
MAX_DEPTH = 100
MAX_ECHO_CHARS = 256
MAX_HEADER_BYTES = 1024 * 1024
READ_HEADER_TIMEOUT = 32.0
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_TRUNCATED = " ..."


class LimitExceeded(ValueError):
    """A decoded document is beyond one of the limits above (the message says which)."""


# --- nesting depth ---------------------------------------------------------------------------


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """Raise ``LimitExceeded`` if ``value`` nests deeper than ``limit`` (a scalar is depth 0).

    Iterative: a document deep enough to exhaust Python's stack is what this guards against.
    Shared sub-values (YAML aliases) are walked once per path, but the YAML loader has already
    bounded their expanded size.
    """
    stack: list[tuple[Any, int]] = [(value, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        v, depth = pop()
        if isinstance(v, dict):
            children: Any = v.values()
        elif isinstance(v, list):
            children = v
        else:
            continue
        if depth > limit:
            raise LimitExceeded(f"exceeded max depth of {limit}")
        for c in children:
            if isinstance(c, dict | list):
                push((c, depth + 1))


def json_loads(body: bytes) -> Any:
    """orjson's ``loads`` with the depth bound (raises ``orjson.JSONDecodeError`` or ``LimitExceeded``)."""
    value = orjson.loads(body)
    # Fewer opening brackets than the limit: cannot be deeper (C-speed count, no walk).
    if body.count(b"{") + body.count(b"[") > MAX_DEPTH:
        check_depth(value)
    return value


# --- YAML --------------------------------------------------------------------------------------


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, composing under a depth bound and an alias-expansion budget.

    PyYAML composes an alias as a reference to the anchored node, so the composed graph stays as
    small as the text; the expansion happens later, when anything walks or encodes the value.
    Each node's expanded size (JSON bytes, estimated) is known once it is composed — its children
    are composed first, an alias's target is complete before the alias — so a document that would
    expand beyond the budget is refused here, before anything is expanded.
    """

    def __init__(self, stream: bytes | str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = False
        self._sizes: dict[int, int] = {}  # id(node) → estimated expanded size

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            target = self.anchors.get(event.anchor)
            if target is not None and id(target) not in self._sizes:
                raise ComposerError(None, None, f"anchor {event.anchor!r} value contains itself", event.start_mark)
            self._aliases = True
            return super().compose_node(parent, index)  # type: ignore[return-value]
        self._depth += 1
        if self._depth > MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise ComposerError(None, None, f"exceeded max depth of {MAX_DEPTH}", mark)
        try:
            node: Node = super().compose_node(parent, index)  # type: ignore[assignment]
        finally:
            self._depth -= 1
        self._sizes[id(node)] = size = self._size(node)
        if self._aliases and size > MAX_YAML_EXPANSION:
            raise ComposerError(None, None, "document contains excessive aliasing", node.start_mark)
        return node

    def _size(self, node: Node) -> int:
        sizes = self._sizes
        if isinstance(node, ScalarNode):
            return len(node.value) + 3
        if isinstance(node, SequenceNode):
            return 2 + sum(sizes.get(id(c), 0) for c in node.value)
        if isinstance(node, MappingNode):
            return 2 + sum(sizes.get(id(k), 0) + sizes.get(id(v), 0) for k, v in node.value)
        return 1


def yaml_load(body: bytes | str) -> Any:
    """One YAML document → Python value, within the depth and expansion limits.

    Raises ``yaml.YAMLError`` (a ``ComposerError`` naming the limit for a document beyond them).
    """
    loader = _BoundedLoader(body)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


# --- values echoed into messages -------------------------------------------------------------


def echo(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """``text`` cut to ``limit`` characters, with " ..." when it was cut."""
    return text if len(text) <= limit else text[:limit] + _TRUNCATED


def _bounded(chunks: Iterator[str], limit: int) -> str:
    out: list[str] = []
    n = 0
    for c in chunks:
        out.append(c)
        n += len(c)
        if n > limit:
            return "".join(out)[:limit] + _TRUNCATED
    return "".join(out)


def show(v: Any, limit: int = MAX_ECHO_CHARS) -> str:
    """A value as apimachinery prints it in ``Invalid value: …``, at most ``limit`` characters.

    Strings are quoted (Go's ``%q``), numbers and booleans plain, a ``map[string]string`` as
    Go's ``%#v`` prints it (what kube-apiserver shows for labels), anything else as JSON.
    """
    if isinstance(v, str):
        return echo(json.dumps(v[: limit + 1]), limit)
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "null"
    if isinstance(v, int | float):
        return echo(str(v) if not isinstance(v, int) or v.bit_length() < 4000 else "<huge integer>", limit)
    if isinstance(v, dict) and all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        items = (f"{json.dumps(k)}:{json.dumps(v[k])}" for k in sorted(v))
        return _bounded(_joined("map[string]string{", items, "}"), limit)
    try:
        # The pure-Python encoder is a generator: it stops when the bound is reached.
        return _bounded(json.JSONEncoder(separators=(",", ":"), sort_keys=True).iterencode(v), limit)
    except (TypeError, ValueError):
        return echo(repr(type(v).__name__), limit)


def _joined(head: str, items: Iterator[str], tail: str) -> Iterator[str]:
    yield head
    for i, item in enumerate(items):
        yield (", " if i else "") + item
    yield tail


# --- query parameters --------------------------------------------------------------------------


def query_int(name: str, value: str) -> int:
    """An integer query parameter as Kubernetes parses it (``strconv.ParseInt(v, 10, 64)``)."""
    text = value.strip()
    digits = text[1:] if text[:1] in "+-" else text
    if not digits.isdigit() or not digits.isascii():
        raise errors.BadRequest(
            f"invalid value for query parameter {name}: strconv.ParseInt: parsing {show(value)}: invalid syntax"
        )
    n = int(text) if len(digits) <= 19 else INT64_MAX + 1
    if not INT64_MIN <= n <= INT64_MAX:
        raise errors.BadRequest(
            f"invalid value for query parameter {name}: strconv.ParseInt: parsing {show(value)}: value out of range"
        )
    return n
