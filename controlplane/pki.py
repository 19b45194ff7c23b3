"""The cluster's certificates: a CA, the API server's serving certificate, and client certificates.

Role: on the first start of the control plane, make everything a TLS cluster needs under the data
directory (``pki/ca.crt``, ``pki/apiserver.crt``, ``pki/admin.crt``, ``pki/apiserver-kubelet-client.crt``,
their keys, the service-account signing key ``pki/sa.key``/``pki/sa.pub``, and the kubeconfigs
``admin.kubeconfig``, ``scheduler.kubeconfig``, ``controller-manager.kubeconfig``); on later starts,
reuse what is there so kubeconfigs handed out earlier stay valid. ``issue_client`` gives any other
identity (a node, the proxy, a learner's user) its own certificate and kubeconfig.

Invariants:
- Identity follows Kubernetes: a client certificate's CN is the user name and each O is a group
  (the admin certificate is ``CN=kubernetes-admin, O=system:masters``). Every component has its
  own identity, named as kubeadm names them (``system:kube-scheduler``,
  ``system:kube-controller-manager``, ``system:node:<name>`` in ``system:nodes``,
  ``system:kube-proxy``); only people use the admin credentials.
- A serving certificate whose SANs do not cover the addresses asked for is re-issued from the same
  CA (the CA itself is never replaced once it exists).
- Private keys are written with mode 0600.

Concurrency: not thread-safe; called once at start-up by the process that owns the data directory.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_SERVER_IPS: tuple[str, ...] = ("127.0.0.1", "192.168.56.10", "10.96.0.1")
DEFAULT_SERVER_NAMES: tuple[str, ...] = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
_VALIDITY = datetime.timedelta(days=3650)

# The user names of the cluster's own components (kubeadm's; the bootstrap RBAC roles bind these).
ADMIN_USER = "kubernetes-admin"
MASTERS_GROUP = "system:masters"
SCHEDULER_USER = "system:kube-scheduler"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
PROXY_USER = "system:kube-proxy"
DNS_USER = "system:kubelab-dns"
NETAGENT_USER = "system:kubelab-netagent"
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
NODES_GROUP = "system:nodes"


def node_user(node: str) -> str:
    """A node's user name (the Node authorizer recognises this prefix)."""
    return f"system:node:{node}"


@dataclass(frozen=True)
class CertificateAuthority:
    cert_pem: bytes
    key_pem: bytes


@dataclass(frozen=True)
class Pki:
    """Paths of the cluster's PKI files."""

    dir: Path
    ca_cert: Path
    ca_key: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    kubelet_client_cert: Path
    kubelet_client_key: Path
    admin_kubeconfig: Path

    @property
    def ca(self) -> CertificateAuthority:
        return CertificateAuthority(self.ca_cert.read_bytes(), self.ca_key.read_bytes())

    @property
    def sa_key(self) -> Path:
        """The service-account token signing key (RSA, PKCS#8 PEM; kubeadm's ``sa.key``)."""
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        """Its public half (``sa.pub``): what verifies tokens and what ``/openid/v1/jwks`` serves."""
        return self.dir / "sa.pub"

    @property
    def scheduler_kubeconfig(self) -> Path:
        return self.admin_kubeconfig.with_name("scheduler.kubeconfig")

    @property
    def controller_manager_kubeconfig(self) -> Path:
        return self.admin_kubeconfig.with_name("controller-manager.kubeconfig")

    @property
    def users_dir(self) -> Path:
        """Certificates issued to people (``kubelab user add``): ``pki/users/<name>.crt``."""
        return self.dir / "users"


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: fast to generate (tests make many clusters) and accepted by Go's TLS stack.
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(cn: str, orgs: Sequence[str] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
    return x509.Name(attrs)


def new_ca(cn: str = "kubelab-ca") -> CertificateAuthority:
    key = _new_key()
    now = datetime.datetime.now(datetime.UTC)
    name = _name(cn)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_cert(
    ca: CertificateAuthority,
    cn: str,
    orgs: Sequence[str] = (),
    ips: Sequence[str] = (),
    dns: Sequence[str] = (),
    *,
    client: bool = True,
    server: bool = False,
) -> tuple[bytes, bytes]:
    """Issue a certificate signed by ``ca``; returns ``(cert_pem, key_pem)``."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key must be an EC key")
    key = _new_key()
    now = datetime.datetime.now(datetime.UTC)
    usages = []
    if client:
        usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
    if server:
        usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn, orgs))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def _write(path: Path, data: bytes, private: bool = False) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def write_kubeconfig(
    path: Path | str,
    server: str,
    ca_pem: bytes,
    cert_pem: bytes | None = None,
    key_pem: bytes | None = None,
    *,
    token: str | None = None,
    user: str = "admin",
    cluster: str = "kubelab",
) -> None:
    """Write a kubeconfig with the certificates embedded (``*-data``), so it can be copied anywhere."""

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    user_entry: dict[str, str] = {}
    if cert_pem is not None and key_pem is not None:
        user_entry["client-certificate-data"] = b64(cert_pem)
        user_entry["client-key-data"] = b64(key_pem)
    if token:
        user_entry["token"] = token
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": user_entry}],
        "contexts": [{"name": f"{user}@{cluster}", "context": {"cluster": cluster, "user": user}}],
        "current-context": f"{user}@{cluster}",
        "preferences": {},
    }
    _write(Path(path), yaml.safe_dump(doc, sort_keys=False).encode(), private=True)


def cert_subject(cert_pem: bytes) -> tuple[str, tuple[str, ...]]:
    """(CN, O entries) of a certificate: the user name and groups it authenticates as."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    cn = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    orgs = tuple(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME))
    return (cn[0] if cn else ""), orgs


def ensure_client_cert(
    ca: CertificateAuthority, cert_path: Path, key_path: Path, cn: str, groups: Sequence[str]
) -> tuple[bytes, bytes]:
    """Reuse the certificate at ``cert_path`` when it names exactly ``cn``/``groups`` and was signed
    by ``ca``; otherwise issue a new one. Returns ``(cert_pem, key_pem)``."""
    try:
        cert_pem, key_pem = cert_path.read_bytes(), key_path.read_bytes()
        cert = x509.load_pem_x509_certificate(cert_pem)
        ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
        if cert_subject(cert_pem) == (cn, tuple(groups)) and cert.issuer == ca_cert.subject:
            cert.verify_directly_issued_by(ca_cert)
            return cert_pem, key_pem
    except (OSError, ValueError, TypeError, InvalidSignature):
        pass  # missing, unreadable, or signed by an earlier CA: issue anew
    cert_pem, key_pem = issue_cert(ca, cn, groups)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    _write(key_path, key_pem, private=True)
    _write(cert_path, cert_pem)
    return cert_pem, key_pem


def issue_client(
    ca: CertificateAuthority,
    kubeconfig: Path | str,
    server: str,
    cn: str,
    groups: Sequence[str] = (),
    *,
    cert_dir: Path | None = None,
    cluster: str = "kubelab",
) -> Path:
    """A client identity ``cn``/``groups`` and its kubeconfig at ``kubeconfig``.

    With ``cert_dir`` the certificate and key are also kept there (``<stem>.crt``/``.key``, the
    stem being the kubeconfig's) and reused on later calls; without, a fresh pair is issued.
    """
    path = Path(kubeconfig)
    path.parent.mkdir(parents=True, exist_ok=True)
    if cert_dir is not None:
        stem = path.name.removesuffix(".kubeconfig")
        cert, key = ensure_client_cert(ca, cert_dir / f"{stem}.crt", cert_dir / f"{stem}.key", cn, groups)
    else:
        cert, key = issue_cert(ca, cn, groups)
    write_kubeconfig(path, server, ca.cert_pem, cert, key, user=cn, cluster=cluster)
    return path


def ensure_service_account_key(pki: Pki) -> None:
    """The key that signs ServiceAccount tokens: RSA 2048 as kubeadm makes it (tokens are RS256).

    Never replaced once it exists: every token issued so far is signed with it.
    """
    if pki.sa_key.exists() and pki.sa_pub.exists():
        return
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _write(pki.sa_key, pem, private=True)
    _write(pki.sa_pub, pub)


def _covers(cert_path: Path, ips: Sequence[str], names: Sequence[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False
    have_ips = {str(i) for i in san.get_values_for_type(x509.IPAddress)}
    have_names = set(san.get_values_for_type(x509.DNSName))
    return set(ips) <= have_ips and set(names) <= have_names


def ensure_cluster_pki(
    data_dir: Path | str,
    server_ips: Sequence[str] = DEFAULT_SERVER_IPS,
    server_names: Sequence[str] = DEFAULT_SERVER_NAMES,
    *,
    server_url: str | None = None,
) -> Pki:
    """Create (or reuse) the cluster PKI under ``data_dir``; write ``admin.kubeconfig``.

    ``server_url`` is the address put into ``admin.kubeconfig`` (default ``https://<first IP>:6443``);
    the kubeconfig is rewritten on every call so it always names the address being served.
    """
    root = Path(data_dir)
    pdir = root / "pki"
    pdir.mkdir(parents=True, exist_ok=True)
    pki = Pki(
        dir=pdir,
        ca_cert=pdir / "ca.crt",
        ca_key=pdir / "ca.key",
        serving_cert=pdir / "apiserver.crt",
        serving_key=pdir / "apiserver.key",
        admin_cert=pdir / "admin.crt",
        admin_key=pdir / "admin.key",
        kubelet_client_cert=pdir / "apiserver-kubelet-client.crt",
        kubelet_client_key=pdir / "apiserver-kubelet-client.key",
        admin_kubeconfig=root / "admin.kubeconfig",
    )
    if not (pki.ca_cert.exists() and pki.ca_key.exists()):
        ca = new_ca()
        _write(pki.ca_key, ca.key_pem, private=True)
        _write(pki.ca_cert, ca.cert_pem)
        for stale in (pki.serving_cert, pki.admin_cert, pki.kubelet_client_cert):
            stale.unlink(missing_ok=True)
    ca = pki.ca
    ips = list(dict.fromkeys(server_ips))
    names = list(dict.fromkeys(server_names))
    if not (pki.serving_key.exists() and _covers(pki.serving_cert, ips, names)):
        cert, key = issue_cert(ca, "kube-apiserver", (), ips, names, client=False, server=True)
        _write(pki.serving_key, key, private=True)
        _write(pki.serving_cert, cert)
    if not (pki.admin_cert.exists() and pki.admin_key.exists()):
        cert, key = issue_cert(ca, ADMIN_USER, (MASTERS_GROUP,))
        _write(pki.admin_key, key, private=True)
        _write(pki.admin_cert, cert)
    if not (pki.kubelet_client_cert.exists() and pki.kubelet_client_key.exists()):
        cert, key = issue_cert(ca, KUBELET_CLIENT_USER, (MASTERS_GROUP,))
        _write(pki.kubelet_client_key, key, private=True)
        _write(pki.kubelet_client_cert, cert)
    url = server_url or f"https://{ips[0] if ips else '127.0.0.1'}:6443"
    write_kubeconfig(
        pki.admin_kubeconfig,
        url,
        ca.cert_pem,
        pki.admin_cert.read_bytes(),
        pki.admin_key.read_bytes(),
        user=ADMIN_USER,
    )
    ensure_service_account_key(pki)
    # The in-process scheduler and controller-manager (``kubelab controlplane``) connect with
    # their own identities, as kubeadm's scheduler.conf and controller-manager.conf do.
    issue_client(ca, pki.scheduler_kubeconfig, url, SCHEDULER_USER, cert_dir=pdir)
    issue_client(ca, pki.controller_manager_kubeconfig, url, CONTROLLER_MANAGER_USER, cert_dir=pdir)
    return pki


# ---- etcd: its own CA, as kubeadm's etcd/ca (issue 17) -----------------------------------------


ETCD_CLIENT_USER = "kube-apiserver-etcd-client"
ETCD_HEALTHCHECK_USER = "kube-etcd-healthcheck-client"


@dataclass(frozen=True)
class EtcdPki:
    """kubeadm's etcd files, for every member of the lab's etcd cluster in one tree.

    - ``etcd/ca.crt``: a CA of its own (kubeadm's ``etcd/ca``), trusted by etcd for both its
      client and its peer connections — so no cluster certificate (a node's, a user's) can talk
      to etcd, and no etcd certificate is a Kubernetes identity;
    - ``etcd/<member>/server.crt``: the member's client-facing serving certificate (its address,
      127.0.0.1, localhost and its name; client auth too, for the gateway's own dial);
      ``etcd/<member>/peer.crt``: its Raft peer certificate (server and client auth, the same
      names: peers verify each other both ways);
    - ``apiserver-etcd-client.crt`` (CN ``kube-apiserver-etcd-client``): what the API server
      presents (``--etcd-certfile``); ``etcd/healthcheck-client.crt``
      (CN ``kube-etcd-healthcheck-client``): what ``kubelab etcd``, backup and status use.
    """

    dir: Path

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    def server_cert(self, member: str) -> Path:
        return self.dir / member / "server.crt"

    def server_key(self, member: str) -> Path:
        return self.dir / member / "server.key"

    def peer_cert(self, member: str) -> Path:
        return self.dir / member / "peer.crt"

    def peer_key(self, member: str) -> Path:
        return self.dir / member / "peer.key"

    @property
    def apiserver_client_cert(self) -> Path:
        return self.dir.parent / "apiserver-etcd-client.crt"

    @property
    def apiserver_client_key(self) -> Path:
        return self.dir.parent / "apiserver-etcd-client.key"

    @property
    def healthcheck_cert(self) -> Path:
        return self.dir / "healthcheck-client.crt"

    @property
    def healthcheck_key(self) -> Path:
        return self.dir / "healthcheck-client.key"


def ensure_etcd_pki(data_dir: Path | str, members: Sequence[tuple[str, str]]) -> EtcdPki:
    """Create (or reuse) the etcd CA and the certificates of ``members`` ((name, IP) pairs) under
    ``data_dir/pki/etcd``, plus the API server's and the health check's client certificates.
    A member certificate not covering its address is re-issued; the CA is never replaced."""
    e = EtcdPki(Path(data_dir) / "pki" / "etcd")
    e.dir.mkdir(parents=True, exist_ok=True)
    if not (e.ca_cert.exists() and e.ca_key.exists()):
        ca = new_ca("etcd-ca")
        _write(e.ca_key, ca.key_pem, private=True)
        _write(e.ca_cert, ca.cert_pem)
    ca = CertificateAuthority(e.ca_cert.read_bytes(), e.ca_key.read_bytes())
    for name, ip in members:
        (e.dir / name).mkdir(exist_ok=True)
        ips, names = [ip, "127.0.0.1"], [name, "localhost"]
        # Both with client auth too, as kubeadm's: etcd's gRPC gateway dials its own gRPC server
        # presenting the serving certificate (3.4 rejects it otherwise: "incompatible key usage").
        for cert_path, key_path in ((e.server_cert(name), e.server_key(name)), (e.peer_cert(name), e.peer_key(name))):
            if not (key_path.exists() and _covers(cert_path, ips, names)):
                cert, key = issue_cert(ca, name, (), ips, names, client=True, server=True)
                _write(key_path, key, private=True)
                _write(cert_path, cert)
    for cert_path, key_path, cn in (
        (e.apiserver_client_cert, e.apiserver_client_key, ETCD_CLIENT_USER),
        (e.healthcheck_cert, e.healthcheck_key, ETCD_HEALTHCHECK_USER),
    ):
        if not (cert_path.exists() and key_path.exists()):
            cert, key = issue_cert(ca, cn)
            _write(key_path, key, private=True)
            _write(cert_path, cert)
    return e


# ---- the aggregation layer: front-proxy CA and the metrics server's identities (issue 13) -------


@dataclass(frozen=True)
class AggregatorPki:
    """kubeadm's front-proxy files, plus what the metrics server serves and scrapes with.

    - ``front-proxy-ca``: a CA of its own (kubeadm: ``front-proxy-ca.crt``), trusted only for the
      requestheader client certificates — so no cluster client certificate can pose as the proxy;
    - ``front-proxy-client`` (CN ``front-proxy-client``, kube-apiserver's
      ``--proxy-client-cert-file``): what the API server presents to aggregated API servers;
    - ``metrics-server.crt``: its serving certificate (cluster CA; the APIService's caBundle);
    - ``metrics-server-client.crt`` (CN ``system:metrics-server``): its identity towards the API
      server and the kubelets, and its ``metrics-server.kubeconfig``.
    """

    front_proxy_ca_cert: Path
    front_proxy_ca_key: Path
    front_proxy_client_cert: Path
    front_proxy_client_key: Path
    metrics_server_cert: Path
    metrics_server_key: Path
    metrics_client_cert: Path
    metrics_client_key: Path
    metrics_kubeconfig: Path


METRICS_SERVER_IPS: tuple[str, ...] = ("127.0.0.1", "192.168.56.10")
METRICS_SERVER_NAMES: tuple[str, ...] = ("localhost", "metrics-server.kube-system.svc")


def ensure_aggregator_pki(
    data_dir: Path | str, server_url: str = "https://192.168.56.10:6443", metrics_ips: Sequence[str] = ()
) -> AggregatorPki:
    """Create (or reuse) the front-proxy CA and client, and the metrics server's certificates
    (its serving certificate covers ``METRICS_SERVER_IPS`` and ``metrics_ips``: where it listens)."""
    root = Path(data_dir)
    pdir = root / "pki"
    pdir.mkdir(parents=True, exist_ok=True)
    a = AggregatorPki(
        front_proxy_ca_cert=pdir / "front-proxy-ca.crt",
        front_proxy_ca_key=pdir / "front-proxy-ca.key",
        front_proxy_client_cert=pdir / "front-proxy-client.crt",
        front_proxy_client_key=pdir / "front-proxy-client.key",
        metrics_server_cert=pdir / "metrics-server.crt",
        metrics_server_key=pdir / "metrics-server.key",
        metrics_client_cert=pdir / "metrics-server-client.crt",
        metrics_client_key=pdir / "metrics-server-client.key",
        metrics_kubeconfig=root / "metrics-server.kubeconfig",
    )
    # The API server and the metrics server may both start first (systemd units, the lab's
    # supervisor): an exclusive lock makes one of them create the files and the other reuse them.
    import fcntl

    with open(pdir / ".aggregator.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _ensure_aggregator_files(a, pdir, server_url, [*METRICS_SERVER_IPS, *metrics_ips])
    return a


def _ensure_aggregator_files(a: AggregatorPki, pdir: Path, server_url: str, metrics_ips: Sequence[str]) -> None:
    if not (a.front_proxy_ca_cert.exists() and a.front_proxy_ca_key.exists()):
        fp = new_ca("front-proxy-ca")
        _write(a.front_proxy_ca_key, fp.key_pem, private=True)
        _write(a.front_proxy_ca_cert, fp.cert_pem)
        a.front_proxy_client_cert.unlink(missing_ok=True)
    if not (a.front_proxy_client_cert.exists() and a.front_proxy_client_key.exists()):
        fp = CertificateAuthority(a.front_proxy_ca_cert.read_bytes(), a.front_proxy_ca_key.read_bytes())
        cert, key = issue_cert(fp, "front-proxy-client")
        _write(a.front_proxy_client_key, key, private=True)
        _write(a.front_proxy_client_cert, cert)
    ca = CertificateAuthority((pdir / "ca.crt").read_bytes(), (pdir / "ca.key").read_bytes())
    ips = list(dict.fromkeys(metrics_ips))
    if not (a.metrics_server_key.exists() and _covers(a.metrics_server_cert, ips, METRICS_SERVER_NAMES)):
        cert, key = issue_cert(
            ca, "metrics-server", (), ips, METRICS_SERVER_NAMES, client=False, server=True
        )
        _write(a.metrics_server_key, key, private=True)
        _write(a.metrics_server_cert, cert)
    if not (a.metrics_client_cert.exists() and a.metrics_client_key.exists()):
        cert, key = issue_cert(ca, "system:metrics-server")
        _write(a.metrics_client_key, key, private=True)
        _write(a.metrics_client_cert, cert)
    write_kubeconfig(
        a.metrics_kubeconfig,
        server_url,
        ca.cert_pem,
        a.metrics_client_cert.read_bytes(),
        a.metrics_client_key.read_bytes(),
        user="system:metrics-server",
    )
