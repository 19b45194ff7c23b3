"""NetworkPolicy defaulting, validation and table row (pure)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from controlplane.api import defaults, tables, validation
from controlplane.api.registry import NETWORKPOLICIES, for_kind


def np(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "p", "namespace": "default", "creationTimestamp": "2026-11-23T00:00:00Z"},
        "spec": spec,
    }


def test_registered_with_its_group_short_name_and_paths() -> None:
    assert for_kind("networking.k8s.io/v1", "NetworkPolicy") is NETWORKPOLICIES
    assert NETWORKPOLICIES.short_names == ("netpol",) and NETWORKPOLICIES.namespaced
    assert NETWORKPOLICIES.item_path("p", "ns") == "/apis/networking.k8s.io/v1/namespaces/ns/networkpolicies/p"


@pytest.mark.parametrize(
    ("spec", "types"),
    [
        ({"podSelector": {}}, ["Ingress"]),
        ({"podSelector": {}, "ingress": [{}]}, ["Ingress"]),
        ({"podSelector": {}, "egress": [{}]}, ["Ingress", "Egress"]),
        ({"podSelector": {}, "policyTypes": ["Egress"]}, ["Egress"]),
    ],
)
def test_policy_types_default_as_kubernetes_does(spec: dict[str, Any], types: list[str]) -> None:
    obj = np(spec)
    defaults.apply_defaults(NETWORKPOLICIES, obj)
    assert obj["spec"]["policyTypes"] == types


def test_ports_default_to_tcp_and_pod_selector_to_empty() -> None:
    obj = np({"ingress": [{"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}], "egress": [{"ports": [{}]}]})
    defaults.apply_defaults(NETWORKPOLICIES, obj)
    assert [p["protocol"] for p in obj["spec"]["ingress"][0]["ports"]] == ["TCP", "UDP"]
    assert obj["spec"]["egress"][0]["ports"][0]["protocol"] == "TCP"
    assert obj["spec"]["podSelector"] == {}
    assert validation.validate(NETWORKPOLICIES, obj) == []


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"ingress": [{"ports": [{"port": 65536}]}]}, "spec.ingress[0].ports[0].port"),
        ({"ingress": [{"ports": [{"port": "Not_A_Name"}]}]}, "spec.ingress[0].ports[0].port"),
        ({"ingress": [{"ports": [{"endPort": 90}]}]}, "spec.ingress[0].ports[0].port"),
        ({"egress": [{"ports": [{"port": 80, "endPort": 70000}]}]}, "spec.egress[0].ports[0].endPort"),
        (
            {"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]}]},
            "spec.egress[0].to[0].ipBlock.except[0]",
        ),
        ({"egress": [{"to": [{"ipBlock": {}}]}]}, "spec.egress[0].to[0].ipBlock.cidr"),
        ({"egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}]}, "spec.egress[0].to[0]"),
        (
            {"ingress": [{"from": [{"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "Bogus"}]}}]}]},
            "spec.ingress[0].from[0].namespaceSelector",
        ),
        ({"policyTypes": ["Ingress", "Egress", "Ingress"]}, "spec.policyTypes"),
    ],
)
def test_invalid_specs_name_the_field(spec: dict[str, Any], field: str) -> None:
    causes = validation.validate(NETWORKPOLICIES, np({"podSelector": {}, **spec}))
    assert field in [c.field for c in causes], causes


def test_valid_mixed_policy_passes() -> None:
    spec = {
        "podSelector": {"matchLabels": {"app": "hello"}},
        "ingress": [
            {
                "from": [
                    {"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {"matchLabels": {"x": "y"}}},
                    {"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.0/24"]}},
                ],
                "ports": [{"port": "http"}, {"port": 9000, "endPort": 9100}],
            }
        ],
        "policyTypes": ["Ingress"],
    }
    assert validation.validate(NETWORKPOLICIES, np(spec)) == []


def test_table_row_shows_the_pod_selector_or_none() -> None:
    now = datetime(2026, 11, 23, 1, 0, tzinfo=UTC)
    cols = [c.to_dict()["name"] for c in tables.columns_for(NETWORKPOLICIES)]
    assert cols == ["Name", "Pod-Selector", "Age"]
    t = tables.to_table(
        NETWORKPOLICIES,
        [np({"podSelector": {"matchLabels": {"app": "hello"}}}), np({"podSelector": {}})],
        list_rv="1",
        now=now,
    )
    assert [r["cells"] for r in t["rows"]] == [["p", "app=hello", "60m"], ["p", "<none>", "60m"]]
