"""Label and field selectors: parse, print, match, reject — against Kubernetes' semantics."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.api import errors
from controlplane.api.selectors import FieldSelector, LabelSelector, Requirement

WEB = {"app": "web", "tier": "fe", "n": "5"}


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("", WEB, True),
        ("app=web", WEB, True),
        ("app==web", WEB, True),
        ("app=db", WEB, False),
        ("app!=db", WEB, True),
        ("app!=web", WEB, False),
        ("missing!=x", WEB, True),
        ("app in (web,db)", WEB, True),
        ("app in (db)", WEB, False),
        ("app notin (db)", WEB, True),
        ("app notin (web)", WEB, False),
        ("missing notin (x)", WEB, True),
        ("missing in (x)", WEB, False),
        ("app", WEB, True),
        ("missing", WEB, False),
        ("!missing", WEB, True),
        ("!app", WEB, False),
        ("app=web,tier=fe", WEB, True),
        ("app=web,tier=be", WEB, False),
        ("  app = web ,  tier in ( fe , be ) ", WEB, True),
        ("n>4", WEB, True),
        ("n>5", WEB, False),
        ("n<6", WEB, True),
        ("app>1", WEB, False),  # not an integer: never matches
        ("empty=", {"empty": ""}, True),
        ("empty=", {}, False),
        ("example.com/role=db", {"example.com/role": "db"}, True),
        ("a in (x,)", {"a": ""}, True),
        ("a in ()", {"a": ""}, True),
        ("a in ()", {"a": "x"}, False),
    ],
)
def test_label_selector_matches(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert LabelSelector.parse(selector).matches(labels) is expected


@pytest.mark.parametrize(
    ("selector", "fragment"),
    [
        ("app=web,", "identifier after ','"),
        ("=web", "found '='"),
        ("app in web", "expected: '('"),
        ("app in (web", "found end of string"),
        ("app web", "found 'web'"),
        ("!", "identifier after '!'"),
        ("app=(x)", "found '('"),
        ("bad key!=x", "found 'key'"),
        ("-bad=x", 'invalid label key "-bad"'),
        ("a/b/c=x", 'invalid label key "a/b/c"'),
        ("app=-x-", 'invalid label value "-x-"'),
        ("n>x", "must be an integer"),
        ("x=" + "v" * 64, "no more than 63 characters"),
    ],
)
def test_label_selector_rejects(selector: str, fragment: str) -> None:
    with pytest.raises(errors.BadRequest) as ei:
        LabelSelector.parse(selector)
    assert fragment in ei.value.message
    assert selector in ei.value.message  # names the selector


@pytest.mark.parametrize(
    ("selector", "canonical"),
    [
        ("tier=fe,app=web", "app=web,tier=fe"),
        ("app in (z, a, a)", "app in (a,z)"),
        ("!x,y", "!x,y"),
        ("app==web", "app==web"),
        ("n>3", "n>3"),
    ],
)
def test_label_selector_canonical_string(selector: str, canonical: str) -> None:
    assert str(LabelSelector.parse(selector)) == canonical


@pytest.mark.parametrize(
    ("d", "string", "matches_web"),
    [
        ({}, "", True),
        ({"matchLabels": {"app": "web"}}, "app=web", True),
        ({"matchLabels": {"app": "db"}}, "app=db", False),
        (
            {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe"]}]},
            "app=web,tier in (fe)",
            True,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["fe"]}]}, "tier notin (fe)", False),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, "app", True),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, "!app", False),
    ],
)
def test_label_selector_from_dict(d: dict[str, Any], string: str, matches_web: bool) -> None:
    sel = LabelSelector.from_dict(d)
    assert str(sel) == string
    assert sel.matches(WEB) is matches_web


def test_nil_selector_matches_nothing_and_empty_matches_everything() -> None:
    assert not LabelSelector.from_dict(None).matches(WEB)
    assert not LabelSelector.from_dict(None).empty
    assert LabelSelector.from_dict({}).empty
    assert LabelSelector.from_dict({}).matches({})


@pytest.mark.parametrize(
    ("d", "fragment"),
    [
        (
            {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["x"]}]},
            "not a valid label selector operator",
        ),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]}, "can't be empty"),
        ({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}, "must be empty"),
        ({"matchLabels": {"a": "b c"}}, "invalid label value"),
        ({"matchLabels": ["a"]}, "matchLabels must be an object"),
    ],
)
def test_label_selector_from_dict_rejects(d: dict[str, Any], fragment: str) -> None:
    with pytest.raises(errors.BadRequest, match=fragment):
        LabelSelector.from_dict(d)


def test_from_set() -> None:
    sel = LabelSelector.from_set({"tier": "fe", "app": "web"})
    assert str(sel) == "app=web,tier=fe"
    assert sel.matches(WEB)
    assert not sel.matches({"app": "web"})


_key = st.from_regex(r"([a-z]{1,5}(\.[a-z]{1,4})?/)?[A-Za-z0-9]([A-Za-z0-9_.-]{0,8}[A-Za-z0-9])?", fullmatch=True)
_val = st.from_regex(r"([A-Za-z0-9]([A-Za-z0-9_.-]{0,8}[A-Za-z0-9])?)?", fullmatch=True)
_req = st.one_of(
    st.builds(lambda k, v, op: Requirement(k, op, (v,)), _key, _val, st.sampled_from(["=", "==", "!="])),
    st.builds(
        lambda k, vs, op: Requirement(k, op, tuple(sorted(set(vs)))),
        _key,
        st.lists(_val, min_size=1, max_size=4),
        st.sampled_from(["in", "notin"]),
    ),
    st.builds(lambda k, op: Requirement(k, op, ()), _key, st.sampled_from(["exists", "!"])),
    st.builds(lambda k, n, op: Requirement(k, op, (str(n),)), _key, st.integers(0, 999), st.sampled_from(["gt", "lt"])),
)


@given(st.lists(_req, max_size=5))
def test_label_selector_round_trip(reqs: list[Requirement]) -> None:
    sel = LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))
    assert LabelSelector.parse(str(sel)) == sel


@given(st.lists(_req, max_size=4), st.dictionaries(_key, _val, max_size=5))
def test_label_selector_is_and_of_requirements(reqs: list[Requirement], labels: dict[str, str]) -> None:
    sel = LabelSelector(tuple(reqs))
    assert sel.matches(labels) == all(LabelSelector((r,)).matches(labels) for r in reqs)


# --- field selectors -----------------------------------------------------------------------

POD_FIELDS = {"metadata.name": "web-1", "spec.nodeName": "n1", "status.phase": "Running"}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("", True),
        ("metadata.name=web-1", True),
        ("metadata.name==web-1", True),
        ("metadata.name!=web-1", False),
        ("spec.nodeName=n1,status.phase!=Succeeded,status.phase!=Failed", True),
        ("spec.nodeName=n2,status.phase!=Succeeded", False),
        ("spec.nodeName=", False),
        ("status.podIP=", True),  # a missing field reads as ""
        ("status.podIP!=", False),
    ],
)
def test_field_selector_matches(selector: str, expected: bool) -> None:
    assert FieldSelector.parse(selector).matches(POD_FIELDS) is expected


def test_field_selector_escapes() -> None:
    sel = FieldSelector.parse(r"metadata.name=a\,b\=c\\d,spec.nodeName=n1")
    assert [(r.field, r.operator, r.value) for r in sel.requirements] == [
        ("metadata.name", "=", "a,b=c\\d"),
        ("spec.nodeName", "=", "n1"),
    ]
    assert sel.matches({"metadata.name": "a,b=c\\d", "spec.nodeName": "n1"})
    assert FieldSelector.parse(str(sel)) == sel


def test_field_selector_exact_match() -> None:
    sel = FieldSelector.parse("metadata.name=web,status.phase!=Failed")
    assert sel.exact_match("metadata.name") == "web"
    assert sel.exact_match("status.phase") is None


@pytest.mark.parametrize(
    ("selector", "fragment"),
    [
        ("metadata.name", "can't understand 'metadata.name'"),
        ("=web", "can't understand '=web'"),
        ("a=b,,c=d", "empty term"),
        ("a=b=c", "unescaped '='"),
        (r"a=b\x", "invalid escape"),
    ],
)
def test_field_selector_rejects(selector: str, fragment: str) -> None:
    with pytest.raises(errors.BadRequest) as ei:
        FieldSelector.parse(selector)
    assert fragment in ei.value.message


_fname = st.from_regex(r"[a-z]{1,6}(\.[a-zA-Z]{1,6}){0,2}", fullmatch=True)


@given(st.lists(st.tuples(_fname, st.sampled_from(["=", "!="]), st.text(max_size=8)), max_size=4))
def test_field_selector_round_trip(terms: list[tuple[str, str, str]]) -> None:
    from controlplane.api.selectors import FieldRequirement

    sel = FieldSelector(tuple(FieldRequirement(f, op, v) for f, op, v in terms))  # type: ignore[arg-type]
    assert FieldSelector.parse(str(sel)) == sel
