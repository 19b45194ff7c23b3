"""The etcd PKI (kubeadm's etcd/ca layout): who signs what, which names each certificate covers."""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from controlplane import pki

MEMBERS = [("kl-cp1", "192.168.56.21"), ("kl-cp2", "192.168.56.22")]


def _cert(p: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(p.read_bytes())


def _usages(c: x509.Certificate) -> set[x509.ObjectIdentifier]:
    return set(c.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def test_members_get_server_and_peer_certificates_from_their_own_ca(tmp_path: Path) -> None:
    cluster = pki.ensure_cluster_pki(tmp_path)
    e = pki.ensure_etcd_pki(tmp_path, MEMBERS)
    ca = _cert(e.ca_cert)
    assert ca.subject != _cert(cluster.ca_cert).subject  # not the cluster CA: kubeadm's etcd/ca
    for name, ip in MEMBERS:
        server, peer = _cert(e.server_cert(name)), _cert(e.peer_cert(name))
        for c in (server, peer):
            assert c.issuer == ca.subject
            san = c.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            assert {str(i) for i in san.get_values_for_type(x509.IPAddress)} == {ip, "127.0.0.1"}
        # both as kubeadm's: etcd's gateway dials its own gRPC server with the serving certificate
        assert _usages(server) == _usages(peer) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
        assert e.server_key(name).stat().st_mode & 0o777 == 0o600
    client = _cert(e.apiserver_client_cert)
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "kube-apiserver-etcd-client"
    # a TLS client can load each pair (the files are what etcd and the API server are given)
    ctx = ssl.create_default_context(cafile=str(e.ca_cert))
    ctx.load_cert_chain(str(e.apiserver_client_cert), str(e.apiserver_client_key))
    ctx.load_cert_chain(str(e.healthcheck_cert), str(e.healthcheck_key))


def test_second_call_reuses_everything_and_reissues_only_what_no_longer_covers(tmp_path: Path) -> None:
    e = pki.ensure_etcd_pki(tmp_path, MEMBERS)
    before = {p: p.read_bytes() for p in e.dir.rglob("*.crt")}
    pki.ensure_etcd_pki(tmp_path, MEMBERS)
    assert {p: p.read_bytes() for p in e.dir.rglob("*.crt")} == before
    pki.ensure_etcd_pki(tmp_path, [("kl-cp1", "192.168.56.31")])  # kl-cp1 moved: re-issued
    assert e.server_cert("kl-cp1").read_bytes() != before[e.server_cert("kl-cp1")]
    assert e.server_cert("kl-cp2").read_bytes() == before[e.server_cert("kl-cp2")]
    assert e.ca_cert.read_bytes() == before[e.ca_cert]
