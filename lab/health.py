"""Each lab component's health, asked of the component itself (``kubelab up`` and ``kubelab status``).

Role: a running process is not a working component. For every component of the plan this module
asks the component's own health endpoint and says healthy or not, with the component's own error:

| component    | asked                                                                 |
|--------------|-----------------------------------------------------------------------|
| registry     | ``GET http://192.168.56.1:5000/v2/``                                  |
| etcd         | ``GET http://127.0.0.1:2379/health`` inside kl-cp (HA: the member's   |
|              | plain-HTTP metrics listener ``:2381/health``, as kubeadm's probe)     |
| haproxy      | ``/readyz`` through the API endpoint it holds (HA)                    |
| controlplane | the API server's ``/readyz`` (HA: each one's own address); the kube-scheduler and |
|              | kube-controller-manager Leases renewed within their duration         |
| dns          | an A query for ``kubernetes.default.svc.cluster.local`` at kl-cp:53   |
| noded        | the kubelet API's ``/healthz`` (:10250, TLS) and the Node's Ready     |
|              | condition (kubelet's reason and message when False)                   |
| netagent     | ``GET http://127.0.0.1:9099/healthz`` inside the node (routes/policy) |
| proxy        | kube-proxy's ``GET http://127.0.0.1:10256/healthz`` inside the node   |

Endpoints bound to a node's loopback are asked *inside* that node's network namespace: one short
``nsenter --net=… python -I -S`` per node runs all of that node's HTTP probes. The proxy and the
network agent report ``lastError`` in their JSON: a component that answers 200 but carries an
error (its first syncs failing, before kube-proxy's 2 × sync-period timeout) is not healthy here.

``own`` marks an error the component reported itself (as opposed to "not answering yet"): ``up``
fails early on those once they persist (``OWN_ERROR_GRACE``), naming the error and the log path.

Pure judges (``judge_http``, ``judge_node``, ``judge_lease``) make the decisions; the probes are
thin I/O. Concurrency: none (called from one CLI thread).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from controlplane.api import errors

OWN_ERROR_GRACE = 45.0  # seconds a component may report its own error before `up` gives up
PROXY_HEALTHZ = "http://127.0.0.1:10256/healthz"
NETAGENT_HEALTHZ = "http://127.0.0.1:9099/healthz"
ETCD_HEALTH = "http://127.0.0.1:2379/health"
ETCD_HA_HEALTH = "http://127.0.0.1:2381/health"  # lab.hatopology.METRICS_PORT
# Ready=False messages every node shows for a moment while it starts: not yet an error of its own.
STARTING_MESSAGES = (
    "container runtime status check may not have completed yet",
    "message:Network plugin returns error: cni plugin not initialized",
)

Probe = tuple[int | None, str, str]  # (HTTP status or None, body, transport error)


@dataclass(frozen=True)
class Health:
    node: str
    name: str
    healthy: bool
    error: str = ""
    own: bool = False  # the component reported this error itself
    log: str = ""
    stopped: bool = False

    @property
    def key(self) -> str:
        return f"{self.node}/{self.name}"

    def line(self) -> str:
        if self.stopped:
            return "stopped"
        return "healthy" if self.healthy else f"unhealthy: {self.error}"


# --- judges (pure) ------------------------------------------------------------------------------


def judge_http(probe: Probe, what: str) -> tuple[bool, str, bool]:
    """(healthy, error, own) from an HTTP probe of a JSON or text health endpoint."""
    code, body, err = probe
    if code is None:
        return False, f"{what} not answering: {err}", False
    doc: Any = None
    try:
        doc = json.loads(body)
    except ValueError:
        pass
    last_error = str(doc.get("lastError") or "") if isinstance(doc, dict) else ""
    if isinstance(doc, dict) and doc.get("health") == "false":  # etcd's /health
        last_error = str(doc.get("reason") or "etcd reports health false")
    if code == 200 and not last_error:
        return True, "", False
    return False, last_error or f"{what} answered HTTP {code}: {body.strip()[:300]}", True


def judge_node(node: Mapping[str, Any] | None) -> tuple[bool, str, bool]:
    """(ready, error, own) from the Node's Ready condition."""
    if node is None:
        return False, "the Node is not registered", False
    for cond in (node.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            if cond.get("status") == "True":
                return True, "", False
            msg = str(cond.get("message") or cond.get("reason") or "NotReady")
            own = not any(m in msg for m in STARTING_MESSAGES)
            return False, f"Node not Ready: {msg}", own
    return False, "the Node has no Ready condition yet", False


def _parse_time(value: str) -> float | None:
    try:
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


def judge_lease(lease: Mapping[str, Any] | None, holder_of: str, now: float) -> tuple[bool, str, bool]:
    """Whether a leader-election Lease is held and renewed within its duration (plus one retry)."""
    if lease is None:
        return False, f"{holder_of} has not taken its Lease kube-system/{holder_of} yet", False
    spec = lease.get("spec") or {}
    renewed = _parse_time(str(spec.get("renewTime") or ""))
    duration = float(spec.get("leaseDurationSeconds") or 15)
    if renewed is None:
        return False, f"{holder_of}: Lease kube-system/{holder_of} was never renewed", True
    age = now - renewed
    if age > duration + 5:
        return (
            False,
            f"{holder_of}: Lease kube-system/{holder_of} not renewed for {age:.0f}s (duration {duration:.0f}s)",
            True,
        )
    return True, "", False


# --- probes (I/O) -------------------------------------------------------------------------------

_SNIPPET = r"""
import json, sys, urllib.request, urllib.error
out = []
for url in json.loads(sys.argv[1]):
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            out.append([r.status, r.read(8192).decode(errors="replace"), ""])
    except urllib.error.HTTPError as e:
        out.append([e.code, e.read(8192).decode(errors="replace"), ""])
    except Exception as e:
        out.append([None, "", str(getattr(e, "reason", e))])
print(json.dumps(out))
"""


def http_in_netns(netns: str, urls: list[str]) -> list[Probe]:
    """GET each URL from inside the node's network namespace (one short process for all)."""
    argv = ["nsenter", f"--net=/var/run/netns/{netns}", "--", sys.executable, "-I", "-S", "-c", _SNIPPET]
    try:
        res = subprocess.run([*argv, json.dumps(urls)], capture_output=True, text=True, timeout=15, check=False)
        rows = json.loads(res.stdout) if res.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        return [(None, "", f"cannot probe inside {netns}: {exc}")] * len(urls)
    if not isinstance(rows, list) or len(rows) != len(urls):
        return [(None, "", f"cannot probe inside {netns}: {res.stderr.strip()[:200]}")] * len(urls)
    return [(r[0], r[1], r[2]) for r in rows]


def http_get(url: str, context: Any = None, timeout: float = 3) -> Probe:
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as resp:
            return int(resp.status), resp.read(8192).decode(errors="replace"), ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(8192).decode(errors="replace"), ""
    except (OSError, ValueError) as exc:
        return None, "", str(getattr(exc, "reason", exc))


def dns_answers(server: str) -> tuple[bool, str, bool]:
    import dns.exception
    import dns.message
    import dns.query
    import dns.rdatatype

    q = dns.message.make_query("kubernetes.default.svc.cluster.local", dns.rdatatype.A)
    try:
        r = dns.query.udp(q, server, timeout=2)
    except (dns.exception.DNSException, OSError) as exc:
        return False, f"cluster DNS at {server}:53 not answering: {exc}", False
    if any(rr.rdtype == dns.rdatatype.A for rr in r.answer):
        return True, "", False
    return False, f"cluster DNS at {server}:53 has no A record for kubernetes.default.svc.cluster.local", True


# --- all components -----------------------------------------------------------------------------


@dataclass
class Cluster:
    """The lab's addresses and an admin view of its API (from labcmd)."""

    host_ip: str
    control_plane: str
    control_plane_ip: str
    node_ips: dict[str, str]
    api: Callable[[str], dict[str, Any]]  # GET path → object (lab.clusterapi.get: raises ApiError/OSError)
    tls: Any  # ssl context with the admin client certificate
    apiserver_url: str
    ha: bool = False  # three control planes behind HAProxy (each API server asked at its own address)


def _get(api: Callable[[str], dict[str, Any]], path: str) -> dict[str, Any] | None:
    try:
        return api(path)
    except errors.NotFound:
        return None


def check(components: list[dict[str, Any]], cluster: Cluster) -> list[Health]:
    """The health of every component in the supervisor's status list."""
    in_ns: dict[str, list[tuple[int, str]]] = {}  # netns -> [(index, url)]
    results: list[Health | None] = [None] * len(components)
    judged: dict[int, list[tuple[bool, str, bool]]] = {}
    nodes: dict[str, Any] | None = None

    def node_objects() -> dict[str, Any]:
        nonlocal nodes
        if nodes is None:
            try:
                nodes = {n["metadata"]["name"]: n for n in cluster.api("/api/v1/nodes").get("items", [])}
            except (errors.ApiError, OSError, ValueError):
                nodes = {}
        return nodes

    leases: list[tuple[bool, str, bool]] | None = None

    def lease_verdicts() -> list[tuple[bool, str, bool]]:
        # The control-plane Leases are the cluster's, not one API server's: read once per check,
        # however many control planes there are.
        nonlocal leases
        if leases is None:
            leases, now = [], time.time()
            for holder in ("kube-scheduler", "kube-controller-manager"):
                try:
                    lease = _get(cluster.api, f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{holder}")
                except (OSError, ValueError) as exc:
                    leases.append((False, f"reading the {holder} Lease: {exc}", False))
                    continue
                leases.append(judge_lease(lease, holder, now))
        return leases

    for i, c in enumerate(components):
        name, node, log = c["name"], c["node"], c.get("log", "")
        if not c.get("wanted", True):
            results[i] = Health(node, name, True, log=log, stopped=True)
            continue
        if not c.get("pid"):
            exit_ = c.get("last_exit")
            err = "not running" + (
                f" (last exit {exit_}, {c.get('restarts', 0)} restarts)" if exit_ is not None else ""
            )
            results[i] = Health(node, name, False, err, own=exit_ is not None, log=log)
            continue
        verdicts: list[tuple[bool, str, bool]] = []
        if name == "registry":
            verdicts.append(judge_http(http_get(f"http://{cluster.host_ip}:5000/v2/"), "registry"))
        elif name in ("controlplane", "haproxy"):
            url = cluster.apiserver_url
            if cluster.ha and name == "controlplane":
                url = f"https://{cluster.node_ips.get(node, '')}:6443"
            what = "kube-apiserver /readyz" if name == "controlplane" else "the API endpoint's /readyz (HAProxy)"
            verdicts.append(judge_http(http_get(url + "/readyz", cluster.tls), what))
            if name == "controlplane" and verdicts[0][0]:
                verdicts += lease_verdicts()
        elif name == "dns":
            verdicts.append(dns_answers(cluster.node_ips.get(node) or cluster.control_plane_ip))
        elif name == "noded":
            ip = cluster.node_ips.get(node, "")
            verdicts.append(judge_http(http_get(f"https://{ip}:10250/healthz", cluster.tls), "kubelet API /healthz"))
            verdicts.append(judge_node(node_objects().get(node)))
        elif name in ("proxy", "netagent", "etcd"):
            etcd = ETCD_HA_HEALTH if cluster.ha else ETCD_HEALTH
            url = {"proxy": PROXY_HEALTHZ, "netagent": NETAGENT_HEALTHZ, "etcd": etcd}[name]
            in_ns.setdefault(node, []).append((i, url))
        else:
            verdicts.append((True, "", False))  # nothing to ask: running is all we know
        if verdicts:
            judged[i] = verdicts
    for netns, items in in_ns.items():
        probes = http_in_netns(netns, [url for _, url in items])
        for (i, url), probe in zip(items, probes, strict=True):
            judged[i] = [judge_http(probe, url)]
    for i, verdicts in judged.items():
        c = components[i]
        bad = [v for v in verdicts if not v[0]]
        results[i] = Health(
            c["node"],
            c["name"],
            not bad,
            "; ".join(v[1] for v in bad),
            own=any(v[2] for v in bad),
            log=c.get("log", ""),
        )
    return [h for h in results if h is not None]


def report(bad: list[Health]) -> str:
    """The failing components, each with its error and its log (and the log's last line if it died)."""
    lines = []
    for h in bad:
        lines.append(f"  {h.name} on {h.node}: {h.error}")
        if h.log:
            tail = last_line(h.log) if h.error.startswith("not running") else ""
            lines.append(f"    log: {h.log}" + (f"  (last line: {tail})" if tail else ""))
    return "\n".join(lines)


def last_line(path: str) -> str:
    """The last non-empty line of a log file (its last 4 KiB read), cut at 300 characters."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""
