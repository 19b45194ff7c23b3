"""Authentication pieces, discovery negotiation and documents, watch event classification, PKI."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from controlplane import pki
from controlplane.api import registry
from controlplane.apiserver import discovery
from controlplane.apiserver.auth import (
    AllowAuthenticated,
    Authenticator,
    RequestAttributes,
    TokenFile,
    user_from_subject,
)
from controlplane.apiserver.requestinfo import parse_resource_path
from controlplane.apiserver.watch import FeedEvent, classify


def test_token_file_csv(tmp_path: Path) -> None:
    f = tmp_path / "tokens.csv"
    f.write_text('# comment\nt1,alice,u1,"devs,ops"\nt2,bob,u2\n\n')
    tokens = TokenFile.load(f)
    alice = tokens.authenticate("t1")
    assert alice is not None and alice.name == "alice" and alice.uid == "u1"
    assert alice.groups == ("devs", "ops", "system:authenticated")
    assert tokens.authenticate("t3") is None
    bad = tmp_path / "bad.csv"
    bad.write_text("onlytoken\n")
    with pytest.raises(ValueError, match=r"bad\.csv:1"):
        TokenFile.load(bad)


def test_authenticator_and_default_authorizer(tmp_path: Path) -> None:
    f = tmp_path / "tokens.csv"
    f.write_text("t1,alice,u1\n")
    authn = Authenticator(TokenFile.load(f), None)
    assert authn.authenticate("Bearer t1", ("127.0.0.1", 1)) is not None
    assert authn.authenticate("Bearer nope", ("127.0.0.1", 1)) is None
    assert authn.authenticate(None, None) is None
    anon = Authenticator(None, None, anonymous=True).authenticate(None, None)
    assert anon is not None and anon.name == "system:anonymous"
    allowed, _ = AllowAuthenticated().authorize(anon, RequestAttributes(verb="get"))
    assert not allowed


def test_user_from_certificate_subject() -> None:
    subject = ((("organizationName", "system:masters"),), (("commonName", "kubernetes-admin"),))
    user = user_from_subject(subject)
    assert user is not None and user.name == "kubernetes-admin" and "system:masters" in user.groups
    assert user_from_subject(((("organizationName", "x"),),)) is None


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        ("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json", discovery.AGG_V2),
        (
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
            discovery.AGG_V2BETA1,
        ),
        ("application/json, */*", None),
        ("", None),
    ],
)
def test_aggregated_negotiation(accept: str, expected: str | None) -> None:
    assert discovery.negotiate_aggregated(accept) == expected


def test_discovery_covers_every_resource() -> None:
    core = discovery.aggregated(True, "apidiscovery.k8s.io/v2")
    named = discovery.aggregated(False, "apidiscovery.k8s.io/v2")
    served = {
        (item["metadata"].get("name", ""), r["resource"])
        for doc in (core, named)
        for item in doc["items"]
        for v in item["versions"]
        for r in v["resources"]
    }
    assert served == {(r.group, r.plural) for r in registry.RESOURCES}
    scale = next(
        s
        for item in named["items"]
        for v in item["versions"]
        for r in v["resources"]
        if r["resource"] == "deployments"
        for s in r["subresources"]
        if s["subresource"] == "scale"
    )
    assert scale["responseKind"] == {"group": "autoscaling", "version": "v1", "kind": "Scale"}


@pytest.mark.parametrize(
    ("path", "want"),
    [
        ("/api/v1/namespaces/default/pods/web/status", ("pods", "default", "web", "status")),
        ("/api/v1/namespaces/default/pods", ("pods", "default", None, None)),
        ("/api/v1/namespaces/kube-system", ("namespaces", None, "kube-system", None)),
        ("/api/v1/namespaces/x/finalize", ("namespaces", None, "x", "finalize")),
        ("/api/v1/nodes/n1", ("nodes", None, "n1", None)),
        ("/apis/apps/v1/namespaces/a/deployments/d/scale", ("deployments", "a", "d", "scale")),
        ("/api/v1/pods", ("pods", None, None, None)),
        ("/api/v1/pods/x", None),  # namespaced item without a namespace
        ("/api/v1/namespaces/default/nodes", None),  # cluster-scoped under a namespace
        ("/api/v1/namespaces/default/pods/web/bogus", None),
        ("/apis/apps/v1/namespaces/a/deployments/d/scale/extra", None),
    ],
)
def test_parse_resource_path(path: str, want: tuple[Any, ...] | None) -> None:
    route = parse_resource_path(path.strip("/").split("/"))
    got = None if route is None else (route.res.plural, route.namespace, route.name, route.subresource)
    assert got == want


def _ev(type_: str, labels: dict[str, str], prev: dict[str, str] | None = None) -> FeedEvent:
    obj = {"metadata": {"name": "x", "labels": labels}}
    prev_obj = {"metadata": {"name": "x", "labels": prev}} if prev is not None else None
    return FeedEvent(type_, "k", 1, obj, prev_obj)


def test_classify_with_selector_transitions() -> None:
    def match(o: dict[str, Any]) -> bool:
        return bool(o["metadata"]["labels"].get("a") == "1")

    assert classify(_ev("ADDED", {"a": "1"}), match) == "ADDED"
    assert classify(_ev("ADDED", {"a": "2"}), match) is None
    assert classify(_ev("MODIFIED", {"a": "1"}, {"a": "1"}), match) == "MODIFIED"
    assert classify(_ev("MODIFIED", {"a": "2"}, {"a": "1"}), match) == "DELETED"
    assert classify(_ev("MODIFIED", {"a": "1"}, {"a": "2"}), match) == "ADDED"
    assert classify(_ev("MODIFIED", {"a": "2"}, {"a": "2"}), match) is None
    assert classify(_ev("DELETED", {"a": "1"}), match) == "DELETED"
    assert classify(_ev("DELETED", {"a": "1"}), None) == "DELETED"


def test_pki_is_created_once_and_verifies(tmp_path: Path) -> None:
    p = pki.ensure_cluster_pki(tmp_path, ["127.0.0.1", "192.168.56.10", "10.96.0.1"], ["kubernetes.default.svc"])
    ca_before = p.ca_cert.read_bytes()
    serving = x509.load_pem_x509_certificate(p.serving_cert.read_bytes())
    san = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(i) for i in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "192.168.56.10", "10.96.0.1"}
    admin = x509.load_pem_x509_certificate(p.admin_cert.read_bytes())
    assert admin.subject.rfc4514_string() == "CN=kubernetes-admin,O=system:masters"
    assert oct(p.admin_key.stat().st_mode & 0o777) == "0o600"
    # the admin cert chains to the CA (a TLS client context accepts it)
    ctx = ssl.create_default_context(cafile=str(p.ca_cert))
    ctx.load_cert_chain(str(p.admin_cert), str(p.admin_key))
    kc = yaml.safe_load(p.admin_kubeconfig.read_text())
    assert kc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    # a second call keeps the CA; a new SAN re-issues only the serving certificate
    p2 = pki.ensure_cluster_pki(
        tmp_path, ["127.0.0.1", "10.0.0.5"], ["kubernetes.default.svc"], server_url="https://10.0.0.5:6443"
    )
    assert p2.ca_cert.read_bytes() == ca_before
    san2 = x509.load_pem_x509_certificate(p2.serving_cert.read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert "10.0.0.5" in {str(i) for i in san2.value.get_values_for_type(x509.IPAddress)}
    assert (
        yaml.safe_load(p2.admin_kubeconfig.read_text())["clusters"][0]["cluster"]["server"] == "https://10.0.0.5:6443"
    )
