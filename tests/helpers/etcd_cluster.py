"""A real etcd cluster on loopback with client and peer TLS, as kubeadm sets it up (for tests and benches).

``start_tls_cluster(tmp_path, members=3)`` makes a separate etcd CA (kubeadm's ``etcd/ca``), for each
member a serving certificate and a peer certificate (``etcd/server``, ``etcd/peer``: both usages,
SANs ``127.0.0.1`` and ``localhost``), and the API server's client certificate
(``apiserver-etcd-client``, CN ``kube-apiserver-etcd-client``); starts Debian's ``etcd`` per member
on ``https://127.0.0.1:<free port>`` with ``--client-cert-auth`` and ``--peer-client-cert-auth``;
returns once the cluster commits a write. ``members=1`` gives a single TLS member.

Each member is stopped by its own pid (SIGTERM, SIGKILL after a grace period), never by name;
``EtcdCluster.stop()`` stops every member and is safe to call twice. Files live under ``tmp_path``,
which the caller removes (pytest's tmp_path, or the bench's tempdir).

Ports: free ports from the kernel (bind to 0); a port taken in between makes the start fail, and
the whole cluster is retried once with fresh ports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from controlplane import pki
from tests.helpers.etcd import free_port


@dataclass
class TlsMember:
    name: str
    client_url: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.alive():
            raise RuntimeError(f"etcd member {self.name} (pid {self.pid}) is still running")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by pid, wait; SIGKILL if it does not exit in ``timeout``."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


@dataclass
class EtcdCluster:
    members: list[TlsMember]
    ca: Path  # etcd/ca.crt
    cert: Path  # apiserver-etcd-client.crt
    key: Path  # apiserver-etcd-client.key
    dir: Path
    _stopped: bool = field(default=False, repr=False)

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca))
        ctx.load_cert_chain(str(self.cert), str(self.key))
        return ctx

    def store_kwargs(self) -> dict[str, Path]:
        """``EtcdStore(cluster.endpoints, **cluster.store_kwargs())``."""
        return {"ca": self.ca, "cert": self.cert, "key": self.key}

    def healthy(self, via: TlsMember | None = None) -> bool:
        """A put commits through ``via`` (default: any live member): a leader and a quorum exist."""
        candidates = [via] if via is not None else [m for m in self.members if m.alive()]
        ctx = self.tls()
        for m in candidates:
            try:
                r = httpx.post(
                    f"{m.client_url}/v3/kv/put", json={"key": "aGVhbHRo", "value": ""}, timeout=1.0, verify=ctx
                )
            except httpx.HTTPError:
                continue
            if r.status_code == 200:
                return True
        return False

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.healthy():
                return
            if not any(m.alive() for m in self.members):
                break
            time.sleep(0.05)
        tails = "\n".join(f"--- {m.name} ---\n{m.log_tail()}" for m in self.members)
        raise RuntimeError(f"the etcd cluster did not commit a write within {timeout:g}s:\n{tails}")

    def stop(self) -> None:
        for m in self.members:
            m.stop()
        self._stopped = True


def _write(path: Path, data: bytes, private: bool = False) -> Path:
    path.write_bytes(data)
    os.chmod(path, 0o600 if private else 0o644)
    return path


def make_etcd_pki(base: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """kubeadm's etcd PKI under ``base/pki/etcd``; returns (ca, apiserver client cert, its key)."""
    d = base / "pki" / "etcd"
    d.mkdir(parents=True, exist_ok=True)
    ca = pki.new_ca("etcd-ca")
    ca_path = _write(d / "ca.crt", ca.cert_pem)
    for name in names:
        for kind in ("server", "peer"):
            c, k = pki.issue_cert(ca, name, ips=["127.0.0.1"], dns=["localhost", name], client=True, server=True)
            _write(d / f"{name}-{kind}.crt", c)
            _write(d / f"{name}-{kind}.key", k, private=True)
    c, k = pki.issue_cert(ca, "kube-apiserver-etcd-client", client=True)
    cert = _write(base / "pki" / "apiserver-etcd-client.crt", c)
    key = _write(base / "pki" / "apiserver-etcd-client.key", k, private=True)
    return ca_path, cert, key


def start_tls_cluster(tmp_path: Path, members: int = 3, *, timeout: float = 30.0) -> EtcdCluster:
    binary = shutil.which("etcd") or "/usr/bin/etcd"
    if not os.path.exists(binary):
        raise RuntimeError("etcd is not installed (Debian package etcd-server; `make deps` installs it)")
    last: BaseException | None = None
    for attempt in range(2):
        base = tmp_path / f"etcd-tls-{attempt}"
        base.mkdir(parents=True)
        os.chmod(base, 0o700)
        names = [f"m{i}" for i in range(members)]
        ca, cert, key = make_etcd_pki(base, names)
        ports = [(free_port(), free_port()) for _ in names]
        initial = ",".join(f"{n}=https://127.0.0.1:{p}" for n, (_, p) in zip(names, ports, strict=True))
        etcd_pki = base / "pki" / "etcd"
        cluster_members = []
        for name, (cport, pport) in zip(names, ports, strict=True):
            data = base / name
            data.mkdir()
            client = f"https://127.0.0.1:{cport}"
            peer = f"https://127.0.0.1:{pport}"
            argv = [
                binary, "--name", name, "--data-dir", str(data / "data"),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", initial, "--initial-cluster-token", f"kltest-{ports[0][0]}",
                "--initial-cluster-state", "new",
                "--cert-file", str(etcd_pki / f"{name}-server.crt"),
                "--key-file", str(etcd_pki / f"{name}-server.key"),
                "--client-cert-auth", "--trusted-ca-file", str(ca),
                "--peer-cert-file", str(etcd_pki / f"{name}-peer.crt"),
                "--peer-key-file", str(etcd_pki / f"{name}-peer.key"),
                "--peer-client-cert-auth", "--peer-trusted-ca-file", str(ca),
                "--heartbeat-interval", "50", "--election-timeout", "500",
                "--log-outputs", "stderr", "--logger", "zap",
            ]  # fmt: skip
            cluster_members.append(TlsMember(name, client, argv, data / "etcd.log"))
        cluster = EtcdCluster(cluster_members, ca, cert, key, base)
        try:
            for m in cluster.members:
                m.start()
            cluster.wait_healthy(timeout)
            return cluster
        except BaseException as exc:
            cluster.stop()
            last = exc
            if not isinstance(exc, RuntimeError) or "address already in use" not in str(exc):
                raise
    raise RuntimeError(f"the etcd TLS cluster did not start: {last}")
