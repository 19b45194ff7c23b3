"""The proxy's /debug/rules as the authenticated debug server serves it (proxy/server.py).

Addresses as in test_proxy_rules.py: cluster IPs 172.30.0.x, endpoints 10.180.0.x.
"""

from __future__ import annotations

import json

import pytest

from controlplane.api import errors
from proxy.server import debug_rules, secure_route
from tests.unit.proxy.test_proxy_proxier import make, ready
from tests.unit.proxy.test_proxy_rules import ep, eps, svc


def test_the_json_form_has_the_rules_and_the_service_to_endpoints_map() -> None:
    p, _, _ = make()
    p.on_service(svc("ns", "a", "172.30.0.1"))
    p.on_endpoint_slice(eps("ns", "a", [ep("10.180.0.1"), ep("10.180.0.2")]))
    ready(p)
    p.sync()
    code, ctype, body = debug_rules(p, {"format": ["json"]})
    got = json.loads(body)
    assert code == 200 and ctype == "application/json"
    assert got["lastApplied"]["full"] is True and got["lastFailed"] is None
    assert "-A KUBE-SERVICES" in got["rules"] and "-d 172.30.0.1" in got["rules"]
    [sp] = got["services"]
    assert (sp["clusterIP"], sp["port"], sp["protocol"]) == ("172.30.0.1", 80, "TCP")
    assert [e["ip"] for e in sp["endpoints"]] == ["10.180.0.1", "10.180.0.2"]
    code, ctype, text = debug_rules(p, {})
    assert ctype.startswith("text/plain") and b"# last applied" in text


def test_the_secure_route_serves_rules_and_health_and_nothing_else() -> None:
    p, _, _ = make()
    route = secure_route(p)
    assert route("/debug/rules", {})[2].startswith(b"# backend:")
    assert route("/healthz", {})[0] == 200
    with pytest.raises(errors.NotFound):
        route("/metrics", {})
