"""The highly available control plane's pieces, rendered (pure): etcd members and the HAProxy front.

Role: one home for what both labs run when they have three control planes (issue 17): the
one-machine lab (``kubelab up --control-planes 3``, processes in namespaces) and the Vagrant lab
(``KUBELAB_CONTROL_PLANES=3``, systemd units on VMs) start the same command lines with the same
names, addresses and certificates. Nothing here runs anything.

- ``etcd_member_argv``: one member of a static-bootstrap etcd cluster with client and peer TLS from
  kubeadm's etcd CA (``controlplane.pki.ensure_etcd_pki``), as kubeadm writes etcd's static pod:
  ``--client-cert-auth``/``--peer-client-cert-auth`` on, so only certificates of that CA talk to it.
  Timing: etcd's defaults (heartbeat 100 ms, election timeout 1 s) — the anchor of the issue's
  write-gap figure.
- ``haproxy_config``: kubeadm's documented HAProxy front for HA (docs "ha-considerations"): TCP
  mode (TLS passes through, so clients still see the API servers' certificates and present their
  own), round robin, and an HTTPS health check of each API server's ``/readyz`` (public, like
  kube-apiserver's), every 500 ms, out after 2 failures — a dead or not-ready API server leaves the
  rotation within ~1 s, inside the issue's 2 s. When no API server is ready (etcd lost quorum:
  every ``/readyz`` fails on its etcd check) the live ones (``/livez``) still take requests, so
  a client hears the API server's 503 naming the lost quorum rather than a closed connection.

Invariants: member names are node names (``kl-cp1`` stacked, ``kl-etcd1`` external); the cluster
token names the lab and changes on every restore (``controlplane.storage.backup``), so a member of
an old cluster can never join a restored one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the Vagrantfile's shape check runs this module on a bare python3
    from controlplane.pki import EtcdPki

CLIENT_PORT = 2379
PEER_PORT = 2380
METRICS_PORT = 2381
API_PORT = 6443
CLUSTER_TOKEN = "kubelab-etcd"
HEALTH_RISE = 2


@dataclass(frozen=True)
class HealthCheck:
    """HAProxy's ``/readyz`` check of each API server: every ``interval_ms`` (which is also the
    budget for the TCP connect and the TLS handshake), ``timeout_ms`` for the answer, out after
    ``fall`` failures in a row. A server marked down has its sessions closed, so a check that fails
    for slowness alone breaks every watch and exec through it: the timings must suit the machines."""

    interval_ms: int
    timeout_ms: int
    fall: int

    def worst_case_s(self) -> float:
        """Seconds from a server's death to its removal, at most."""
        return (self.fall * max(self.interval_ms, self.timeout_ms) + self.interval_ms) / 1000


#: Namespaces on one machine: a dead API server is out within ~2 s (issue 17's goal): worst case
#: for a cut wire, 700 ms timeout + 500 ms + 700 ms ≈ 1.9 s.
NAMESPACE_CHECK = HealthCheck(500, 700, 2)
#: VMs: under software emulation (QEMU without KVM, as in ``make test-vagrant`` here) a TLS
#: handshake with a busy guest takes over 500 ms; with the namespace timings the API servers were
#: marked down and up every few seconds and ``kubectl exec`` through the endpoint broke ("websocket:
#: close 1006 (abnormal closure)"). Out within ~8 s instead.
VM_CHECK = HealthCheck(2000, 3000, 2)


class HaError(ValueError):
    pass


def check_control_planes(n: int) -> None:
    """1 or 3 (or 5): an odd number of etcd members. The message says why an even count is refused."""
    if n < 1:
        raise HaError(f"--control-planes must be 1, 3 or 5, not {n}")
    if n % 2 == 0:
        quorum = n // 2 + 1
        raise HaError(
            f"--control-planes {n} is refused: an etcd cluster of {n} members needs {quorum} for quorum and so "
            f"survives {n - quorum} failure(s), no more than {n - 1} member(s) would: an even count gives no extra "
            "fault tolerance; use an odd number (1, 3 or 5)"
        )
    if n > 5:
        raise HaError(f"--control-planes must be 1, 3 or 5, not {n} (the lab's addresses hold five)")


def client_url(ip: str) -> str:
    return f"https://{ip}:{CLIENT_PORT}"


def peer_url(ip: str) -> str:
    return f"https://{ip}:{PEER_PORT}"


def initial_cluster(members: Sequence[tuple[str, str]]) -> str:
    return ",".join(f"{name}={peer_url(ip)}" for name, ip in members)


def etcd_member_argv(
    name: str,
    ip: str,
    members: Sequence[tuple[str, str]],
    pki: EtcdPki,
    data_dir: Path | str,
    *,
    token: str = CLUSTER_TOKEN,
    cluster_state: str = "new",
) -> list[str]:
    """The ``etcd`` command line of member ``name`` (at ``ip``) of the cluster ``members``."""
    if (name, ip) not in members:
        raise HaError(f"etcd member {name} ({ip}) is not one of {initial_cluster(members)}")
    return [
        "etcd",
        "--name", name,
        "--data-dir", str(data_dir),
        "--listen-client-urls", f"{client_url(ip)},https://127.0.0.1:{CLIENT_PORT}",
        "--advertise-client-urls", client_url(ip),
        "--listen-peer-urls", peer_url(ip),
        "--initial-advertise-peer-urls", peer_url(ip),
        "--initial-cluster", initial_cluster(members),
        "--initial-cluster-token", token,
        "--initial-cluster-state", cluster_state,
        "--client-cert-auth", "--trusted-ca-file", str(pki.ca_cert),
        "--cert-file", str(pki.server_cert(name)), "--key-file", str(pki.server_key(name)),
        "--peer-client-cert-auth", "--peer-trusted-ca-file", str(pki.ca_cert),
        "--peer-cert-file", str(pki.peer_cert(name)), "--peer-key-file", str(pki.peer_key(name)),
        # kubeadm's: plain-HTTP /health and /metrics on loopback only, for probes that hold no client
        # certificate (the lab's health checks, like the static pod's liveness probe).
        "--listen-metrics-urls", f"http://127.0.0.1:{METRICS_PORT}",
        "--snapshot-count", "10000",
        "--logger", "zap", "--log-level", "info",
    ]  # fmt: skip


def etcd_endpoints(members: Sequence[tuple[str, str]]) -> list[str]:
    """What etcdctl is given: every member's client URL."""
    return [client_url(ip) for _, ip in members]


def apiserver_etcd_endpoints(members: Sequence[tuple[str, str]], control_plane: str) -> list[str]:
    """What the API server on ``control_plane`` is given: every member's client URL, its own
    member first when stacked — as kubeadm points each kube-apiserver at its local member, so a
    node's failure takes its own API server along, not every API server's store calls (they would
    all wait on the same dead first member until a request timed out)."""
    return etcd_endpoints(sorted(members, key=lambda m: m[0] != control_plane))


def haproxy_config(
    bind_ip: str,
    servers: Sequence[tuple[str, str]],
    ca_file: Path | str,
    *,
    stats_socket: Path | str | None = None,
    check: HealthCheck = NAMESPACE_CHECK,
) -> str:
    """haproxy.cfg: the API endpoint ``bind_ip:6443`` in front of ``servers`` ((name, IP) pairs),
    each health-checked with ``check``'s timings."""
    lines = [
        "# kubelab: the API endpoint of the HA control plane (kubeadm's HAProxy front, TCP pass-through)",
        "global",
        "    log stdout format raw local0 info",
        "    maxconn 4096",
    ]
    if stats_socket:
        lines.append(f"    stats socket {stats_socket} mode 600 level admin")
    lines += [
        "defaults",
        "    mode tcp",
        "    log global",
        "    option tcplog",
        "    option dontlognull",
        # A connection to a dead server (its wire cut: no answer at all) is given up after 1 s and
        # retried on another server, so a request racing the health check is not lost.
        "    timeout connect 1s",
        "    retries 2",
        "    option redispatch 1",
        # Watches stay open for minutes; kubectl's and client-go's idle connections for 90 s.
        "    timeout client 1h",
        "    timeout server 1h",
        "    timeout tunnel 1h",
        "frontend apiserver",
        f"    bind {bind_ip}:{API_PORT}",
        # Ready API servers first; when none is ready (etcd without quorum makes every /readyz fail)
        # the live ones still get the requests, so clients read the API server's own answer — 503
        # naming the lost quorum — instead of a connection closed by the balancer.
        "    use_backend apiservers if { nbsrv(apiservers) gt 0 }",
        "    default_backend apiservers-live",
    ]
    # (backend, URI, check every, failures to mark down, check timeout): the ready set is judged
    # fast (a dead API server is out within ~1-2 s); the live set, used only when no server is
    # ready, leniently (an API server whose etcd times out answers slowly but still answers).
    checks = (
        ("apiservers", "/readyz", f"{check.interval_ms}ms", check.fall, f"{check.timeout_ms}ms"),
        ("apiservers-live", "/livez", "1s", 3, "3s"),
    )
    for backend, uri, inter, fall, timeout in checks:
        lines += [
            f"backend {backend}",
            "    balance roundrobin",
            "    option httpchk",
            "    http-check connect ssl",
            f"    http-check send meth GET uri {uri}",
            "    http-check expect status 200",
            f"    timeout check {timeout}",
            # A server marked down has its established connections closed at once: a client's watch on
            # a dead API server ends and the client reconnects through us to a live one.
            "    default-server on-marked-down shutdown-sessions",
        ]
        for name, ip in servers:
            lines.append(
                f"    server {name} {ip}:{API_PORT} check inter {inter} fall {fall} "
                f"rise {HEALTH_RISE} verify required ca-file {ca_file}"
            )
    return "\n".join(lines) + "\n"
