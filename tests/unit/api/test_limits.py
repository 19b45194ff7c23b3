"""``controlplane.api.limits``: each request-decoding limit holds at its edge, and costs nothing below it."""

from __future__ import annotations

import time

import orjson
import pytest
import yaml

from controlplane.api import errors, limits


def laughs(levels: int, fanout: int) -> str:
    lines = ['l0: &l0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * fanout) + "]")
    return "\n".join(lines) + "\n"


def nested(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


# --- YAML --------------------------------------------------------------------------------------


def test_yaml_aliases_within_the_budget_decode() -> None:
    doc = limits.yaml_load(laughs(3, 10) + "base: &b {x: 1}\nmerged:\n  <<: *b\n  y: 2\n")
    assert len(doc["l3"]) == 10 and doc["l3"][0][0][0] == "lol"
    assert doc["merged"] == {"x": 1, "y": 2}


def test_yaml_billion_laughs_is_refused_quickly_without_expansion() -> None:
    start = time.monotonic()
    with pytest.raises(yaml.YAMLError, match="document contains excessive aliasing"):
        limits.yaml_load(laughs(9, 9))
    assert time.monotonic() - start < 1.0


def test_yaml_expansion_budget_is_the_body_limit() -> None:
    # one alias of a ~1 MiB string is fine; four aliases of a 1 MiB string exceed 3 MiB
    big = "x" * (1024 * 1024)
    ok = limits.yaml_load(f"a: &a {big}\nb: *a\n")
    assert ok["b"] is ok["a"]
    with pytest.raises(yaml.YAMLError, match="excessive aliasing"):
        limits.yaml_load(f"a: &a {big}\nb: [*a, *a, *a, *a]\n")


def test_yaml_anchor_containing_itself_is_refused() -> None:
    with pytest.raises(yaml.YAMLError, match="contains itself"):
        limits.yaml_load("a: &x {b: *x}\n")


@pytest.mark.parametrize(
    "text", ["[" * 101 + "]" * 101, "x:\n  " + "- " * 101 + "y\n", "a: " + "{b: " * 101 + "1" + "}" * 101]
)
def test_yaml_deeper_than_the_limit_is_refused(text: str) -> None:
    with pytest.raises(yaml.YAMLError, match=f"exceeded max depth of {limits.MAX_DEPTH}"):
        limits.yaml_load(text)


def test_yaml_at_the_depth_limit_decodes() -> None:
    value = limits.yaml_load("[" * limits.MAX_DEPTH + "]" * limits.MAX_DEPTH)
    limits.check_depth(value)


def test_yaml_ten_thousand_levels_is_an_error_not_a_recursion() -> None:
    with pytest.raises(yaml.YAMLError):
        limits.yaml_load("a: " + "[" * 10_000 + "]" * 10_000)


# --- JSON --------------------------------------------------------------------------------------


def test_json_depth_limit_edge() -> None:
    assert limits.json_loads(nested(limits.MAX_DEPTH)) is not None
    with pytest.raises(limits.LimitExceeded, match="exceeded max depth of 100"):
        limits.json_loads(nested(limits.MAX_DEPTH + 1))
    with pytest.raises(orjson.JSONDecodeError):  # orjson's own limit, far beyond ours
        limits.json_loads(nested(5000))


def test_json_many_brackets_but_shallow_is_accepted() -> None:
    wide = orjson.dumps({"items": [{"a": [1]} for _ in range(1000)]})
    assert len(limits.json_loads(wide)["items"]) == 1000


# --- echo ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("abc", '"abc"'),
        (True, "true"),
        (None, "null"),
        (3, "3"),
        ({"b": "2", "a": "1"}, 'map[string]string{"a":"1", "b":"2"}'),
        ([1, {"x": None}], '[1,{"x":null}]'),
    ],
)
def test_show_prints_as_apimachinery(value: object, shown: str) -> None:
    assert limits.show(value) == shown


def test_show_truncates_long_values() -> None:
    out = limits.show("y" * 10_000)
    assert out.endswith(" ...") and len(out) <= limits.MAX_ECHO_CHARS + 4
    out = limits.show({str(i): str(i) for i in range(10_000)})
    assert out.startswith("map[string]string{") and out.endswith(" ...")
    assert len(out) <= limits.MAX_ECHO_CHARS + 4


def test_show_never_expands_a_shared_value() -> None:
    """A value shared 9^9 times (what a YAML alias bomb builds) prints in bounded time."""
    v: object = "lol"
    for _ in range(9):
        v = [v] * 9
    start = time.monotonic()
    out = limits.show(v)
    assert time.monotonic() - start < 1.0
    assert len(out) <= limits.MAX_ECHO_CHARS + 4


# --- query parameters ------------------------------------------------------------------------------


def test_query_int_is_int64() -> None:
    assert limits.query_int("limit", "-1") == -1
    assert limits.query_int("timeoutSeconds", str(2**63 - 1)) == 2**63 - 1
    with pytest.raises(errors.BadRequest, match="value out of range"):
        limits.query_int("timeoutSeconds", str(2**63))
    with pytest.raises(errors.BadRequest, match="value out of range") as e:
        limits.query_int("timeoutSeconds", "9" * 400)
    assert len(e.value.message) < 400
    with pytest.raises(errors.BadRequest, match="invalid syntax"):
        limits.query_int("limit", "soon")
    with pytest.raises(errors.BadRequest, match="invalid syntax"):
        limits.query_int("limit", "١٢")  # Unicode digits are not Go digits
