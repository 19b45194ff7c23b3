"""Label selectors and field selectors, parsed and matched as Kubernetes does.

Role: turn the ``labelSelector``/``fieldSelector`` query strings and ``metav1.LabelSelector``
dicts (``matchLabels`` + ``matchExpressions``) into immutable values that answer
``matches(...)``. Used by the API server (list/watch filtering), the controllers (which pods
does a ReplicaSet own?), the scheduler and every client that builds selector strings.

Label selector grammar (apimachinery ``labels.Parse``)::

    selector    := requirement ("," requirement)*
    requirement := "!" KEY | KEY | KEY ("=" | "==" | "!=") VALUE
                 | KEY ("in" | "notin") "(" VALUE ("," VALUE)* ")" | KEY (">" | "<") INTEGER

Semantics: ``=``/``==``/``in`` need the key present with a listed value; ``!=``/``notin``
also match when the key is absent; ``KEY`` (Exists) and ``!KEY`` (DoesNotExist) test presence;
``>``/``<`` compare integer values. All requirements are ANDed; the empty selector matches
everything. ``from_dict(None)`` is the "nil selector", which matches nothing (as
``metav1.LabelSelectorAsSelector`` does).

Field selectors (``fields.ParseSelector``): comma-separated ``field=value``, ``field==value`` or
``field!=value`` terms; ``\\``, ``,`` and ``=`` in values are escaped with a backslash. A field the
object does not have reads as the empty string, as in Kubernetes' ``fields.Set``.

Invariants: ``LabelSelector.parse(str(s)) == s`` and likewise for field selectors; requirements
are kept sorted by key and set values sorted, so equal selectors print identically. Values are
frozen dataclasses; safe to share between threads. Bad syntax raises ``errors.BadRequest`` whose
message quotes the selector and the offending part.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from controlplane.api import errors

__all__ = [
    "FieldRequirement",
    "FieldSelector",
    "LabelSelector",
    "Requirement",
    "escape_field_value",
    "label_value_errors",
    "qualified_name_errors",
]

Operator = Literal["=", "==", "!=", "in", "notin", "exists", "!", "gt", "lt"]

# --- name syntax shared with validation.py -------------------------------------------------

_QUALIFIED_NAME_RE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_DNS1123_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def qualified_name_errors(key: str) -> list[str]:
    """Why ``key`` is not a Kubernetes qualified name (``[prefix/]name``), or ``[]``.

    The messages follow apimachinery's ``IsQualifiedName`` wording.
    """
    msgs: list[str] = []
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            msgs.append("prefix part must be non-empty")
        elif len(prefix) > 253:
            msgs.append("prefix part must be no more than 253 characters")
        elif not _DNS1123_SUBDOMAIN_RE.match(prefix):
            msgs.append(
                "prefix part a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric character"
            )
    else:
        return [
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and "
            "end with an alphanumeric character with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    if not name:
        msgs.append("name part must be non-empty")
    elif len(name) > 63:
        msgs.append("name part must be no more than 63 characters")
    elif not _QUALIFIED_NAME_RE.match(name):
        msgs.append(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character"
        )
    return msgs


def label_value_errors(value: str) -> list[str]:
    """Why ``value`` is not a valid label value (≤63 chars, may be empty), or ``[]``."""
    msgs: list[str] = []
    if len(value) > 63:
        msgs.append("must be no more than 63 characters")
    if not _LABEL_VALUE_RE.match(value):
        msgs.append(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character"
        )
    return msgs


# --- label selectors -----------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """One ANDed term of a label selector. ``values`` is sorted and free of duplicates."""

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.operator
        present = self.key in labels
        if op in ("=", "==", "in"):
            return present and labels[self.key] in self.values
        if op in ("!=", "notin"):
            return not present or labels[self.key] not in self.values
        if op == "exists":
            return present
        if op == "!":
            return not present
        # gt / lt: a value that is not an integer never matches (as in Kubernetes)
        if not present:
            return False
        try:
            have = int(labels[self.key])
        except ValueError:
            return False
        want = int(self.values[0])
        return have > want if op == "gt" else have < want

    def __str__(self) -> str:
        op = self.operator
        if op == "exists":
            return self.key
        if op == "!":
            return f"!{self.key}"
        if op in ("in", "notin"):
            return f"{self.key} {op} ({','.join(self.values)})"
        if op == "gt":
            return f"{self.key}>{self.values[0]}"
        if op == "lt":
            return f"{self.key}<{self.values[0]}"
        return f"{self.key}{op}{self.values[0]}"


def _make_requirement(source: str, key: str, op: Operator, values: Sequence[str]) -> Requirement:
    """Validate one requirement the way ``labels.NewRequirement`` does."""

    def bad(why: str) -> errors.BadRequest:
        return errors.BadRequest(f'unable to parse requirement in label selector "{source}": {why}')

    key_errs = qualified_name_errors(key)
    if key_errs:
        raise bad(f'invalid label key "{key}": {"; ".join(key_errs)}')
    uniq = tuple(sorted(set(values)))
    if op in ("=", "==", "!="):
        if len(uniq) != 1:
            raise bad(f"exact-match compatibility requires one single value for key {key!r}")
    elif op in ("in", "notin"):
        if not uniq:
            raise bad(f"for 'in', 'notin' operators, values set can't be empty (key {key!r})")
    elif op in ("exists", "!"):
        if uniq:
            raise bad(f"values set must be empty for exists and does not exist (key {key!r})")
    elif op in ("gt", "lt"):
        if len(uniq) != 1:
            raise bad(f"for 'Gt', 'Lt' operators, exactly one value is required (key {key!r})")
        try:
            int(uniq[0])
        except ValueError:
            raise bad(f"for 'Gt', 'Lt' operators, the value must be an integer, got {uniq[0]!r}") from None
    if op not in ("gt", "lt"):
        for v in uniq:
            v_errs = label_value_errors(v)
            if v_errs:
                raise bad(f'invalid label value "{v}" for key "{key}": {"; ".join(v_errs)}')
    return Requirement(key, op, uniq)


_SPECIAL = frozenset("!=,()<>")


def _tokenize(s: str) -> list[str]:
    """Split into identifiers and the operator/punctuation tokens of the label grammar."""
    tokens: list[str] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c.isspace():
            i += 1
        elif c == "=" and s.startswith("==", i):
            tokens.append("==")
            i += 2
        elif c == "!" and s.startswith("!=", i):
            tokens.append("!=")
            i += 2
        elif c in _SPECIAL:
            tokens.append(c)
            i += 1
        else:
            j = i
            while j < n and not s[j].isspace() and s[j] not in _SPECIAL:
                j += 1
            tokens.append(s[i:j])
            i = j
    return tokens


def _is_ident(tok: str | None) -> bool:
    return tok is not None and tok not in _SPECIAL and tok not in ("==", "!=")


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()
    # The nil metav1.LabelSelector: selects nothing (distinct from the empty one, which selects all).
    match_nothing: bool = field(default=False)

    @property
    def empty(self) -> bool:
        """True when the selector places no constraint (matches every object)."""
        return not self.requirements and not self.match_nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.match_nothing:
            return False
        lbls = labels or {}
        return all(r.matches(lbls) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    @classmethod
    def everything(cls) -> LabelSelector:
        return cls()

    @classmethod
    def nothing(cls) -> LabelSelector:
        return cls(match_nothing=True)

    @classmethod
    def from_set(cls, labels: Mapping[str, str]) -> LabelSelector:
        """``app=web,tier=fe`` from a label map (``labels.SelectorFromSet``)."""
        source = ",".join(f"{k}={v}" for k, v in labels.items())
        reqs = [_make_requirement(source, k, "=", [v]) for k, v in labels.items()]
        return cls(tuple(sorted(reqs, key=lambda r: r.key)))

    @classmethod
    def parse(cls, s: str) -> LabelSelector:
        """Parse a ``labelSelector`` string; raises ``errors.BadRequest`` on bad syntax."""
        tokens = _tokenize(s)
        pos = 0
        reqs: list[Requirement] = []

        def peek() -> str | None:
            return tokens[pos] if pos < len(tokens) else None

        def bad(found: str | None, expected: str) -> errors.BadRequest:
            shown = "end of string" if found is None else repr(found)
            return errors.BadRequest(
                f'unable to parse requirement in label selector "{s}": found {shown}, expected: {expected}'
            )

        if not tokens:
            return cls()
        while True:
            tok = peek()
            if tok == "!":
                pos += 1
                key = peek()
                if not _is_ident(key):
                    raise bad(key, "identifier after '!'")
                assert key is not None
                pos += 1
                reqs.append(_make_requirement(s, key, "!", []))
            elif _is_ident(tok):
                assert tok is not None
                key = tok
                pos += 1
                op_tok = peek()
                if op_tok is None or op_tok == ",":
                    reqs.append(_make_requirement(s, key, "exists", []))
                elif op_tok in ("=", "==", "!=", ">", "<"):
                    pos += 1
                    val = peek()
                    if val is None or val == ",":
                        value = ""  # ``a=`` selects the empty value, as Kubernetes allows
                    elif _is_ident(val):
                        value = val
                        pos += 1
                    else:
                        raise bad(val, "identifier")
                    op: Operator = {"=": "=", "==": "==", "!=": "!=", ">": "gt", "<": "lt"}[op_tok]  # type: ignore[assignment]
                    reqs.append(_make_requirement(s, key, op, [value]))
                elif op_tok in ("in", "notin"):
                    pos += 1
                    if peek() != "(":
                        raise bad(peek(), "'('")
                    pos += 1
                    values: list[str] = []
                    if peek() == ")":
                        values.append("")  # ``in ()`` is the set holding "" (as labels.Parse reads it)
                    while True:
                        v = peek()
                        if v == ")":
                            pos += 1
                            break
                        if v == ",":
                            # an empty entry like ``in (a,,b)`` or ``in (,a)`` is the empty value
                            values.append("")
                            pos += 1
                            continue
                        if not _is_ident(v):
                            raise bad(v, "',' or ')'")
                        assert v is not None
                        values.append(v)
                        pos += 1
                        nxt = peek()
                        if nxt == ",":
                            pos += 1
                            if peek() == ")":
                                values.append("")
                        elif nxt != ")":
                            raise bad(nxt, "',' or ')'")
                    reqs.append(_make_requirement(s, key, op_tok, values))  # type: ignore[arg-type]
                else:
                    raise bad(op_tok, "'=', '==', '!=', 'in', 'notin', '>', '<', ',' or end of string")
            else:
                raise bad(tok, "'!' or identifier")
            nxt = peek()
            if nxt is None:
                break
            if nxt != ",":
                raise bad(nxt, "',' or end of string")
            pos += 1
            if peek() is None:
                raise bad(None, "identifier after ','")
        return cls(tuple(sorted(reqs, key=lambda r: r.key)))

    @classmethod
    def from_dict(cls, selector: Mapping[str, Any] | None) -> LabelSelector:
        """Convert a ``metav1.LabelSelector``; ``None`` selects nothing, ``{}`` everything."""
        if selector is None:
            return cls.nothing()
        if not isinstance(selector, Mapping):
            raise errors.BadRequest(f"invalid label selector {selector!r}: must be an object")
        reqs: list[Requirement] = []
        source = str(dict(selector))
        match_labels = selector.get("matchLabels") or {}
        if not isinstance(match_labels, Mapping):
            raise errors.BadRequest("invalid label selector: matchLabels must be an object")
        for k, v in match_labels.items():
            reqs.append(_make_requirement(source, str(k), "=", [str(v)]))
        ops: dict[str, Operator] = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
        for i, expr in enumerate(selector.get("matchExpressions") or []):
            if not isinstance(expr, Mapping):
                raise errors.BadRequest(f"invalid label selector: matchExpressions[{i}] must be an object")
            op_name = str(expr.get("operator", ""))
            if op_name not in ops:
                raise errors.BadRequest(
                    f'invalid label selector: matchExpressions[{i}].operator: "{op_name}" is not a valid '
                    "label selector operator (In, NotIn, Exists, DoesNotExist)"
                )
            vals = expr.get("values") or []
            if not isinstance(vals, list):
                raise errors.BadRequest(f"invalid label selector: matchExpressions[{i}].values must be a list")
            reqs.append(_make_requirement(source, str(expr.get("key", "")), ops[op_name], [str(v) for v in vals]))
        return cls(tuple(sorted(reqs, key=lambda r: r.key)))


# --- field selectors -----------------------------------------------------------------------


def escape_field_value(value: str) -> str:
    """Escape ``\\``, ``,`` and ``=`` so a value survives inside a field selector string."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _unescape_field_value(s: str, source: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 >= len(s) or s[i + 1] not in "\\,=":
                raise errors.BadRequest(f'invalid field selector "{source}": invalid escape sequence in value {s!r}')
            out.append(s[i + 1])
            i += 2
            continue
        if c in ",=":
            raise errors.BadRequest(f'invalid field selector "{source}": unescaped {c!r} in value {s!r}')
        out.append(c)
        i += 1
    return "".join(out)


def _split_unescaped(s: str, sep: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            cur.append(s[i : i + 2])
            i += 2
            continue
        if c == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    operator: Literal["=", "!="]
    value: str

    def matches(self, fields: Mapping[str, str]) -> bool:
        have = fields.get(self.field, "")
        return have == self.value if self.operator == "=" else have != self.value

    def __str__(self) -> str:
        return f"{self.field}{self.operator}{escape_field_value(self.value)}"


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.requirements

    def matches(self, fields: Mapping[str, str]) -> bool:
        return all(r.matches(fields) for r in self.requirements)

    def exact_match(self, field_name: str) -> str | None:
        """The value ``field_name`` must equal (``metadata.name=x`` → ``"x"``), if any term pins it."""
        for r in self.requirements:
            if r.field == field_name and r.operator == "=":
                return r.value
        return None

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)

    @classmethod
    def parse(cls, s: str) -> FieldSelector:
        """Parse a ``fieldSelector`` string; raises ``errors.BadRequest`` on bad syntax."""
        if not s.strip():
            return cls()
        reqs: list[FieldRequirement] = []
        for term in _split_unescaped(s, ","):
            if not term:
                raise errors.BadRequest(f'invalid field selector "{s}": empty term')
            # The first unescaped operator splits the term; "!=" and "==" win over "=".
            idx = -1
            op = ""
            i = 0
            while i < len(term):
                if term[i] == "\\":
                    i += 2
                    continue
                if term.startswith("!=", i):
                    idx, op = i, "!="
                    break
                if term.startswith("==", i):
                    idx, op = i, "=="
                    break
                if term[i] == "=":
                    idx, op = i, "="
                    break
                i += 1
            if idx <= 0:
                raise errors.BadRequest(f"invalid selector: '{s}'; can't understand '{term}'")
            name = term[:idx].strip()
            if not name or "\\" in name:
                raise errors.BadRequest(f"invalid selector: '{s}'; can't understand '{term}'")
            value = _unescape_field_value(term[idx + len(op) :], s)
            reqs.append(FieldRequirement(name, "!=" if op == "!=" else "=", value))
        return cls(tuple(reqs))

    @classmethod
    def from_set(cls, fields: Mapping[str, str]) -> FieldSelector:
        return cls(tuple(FieldRequirement(k, "=", v) for k, v in fields.items()))
