"""Render Services and EndpointSlices as kube-proxy's iptables rules (pure).

Role: ``render(services, endpoint_slices, node, options) -> Ruleset`` is the planner of the proxy;
it never touches the kernel. Its output is exactly what kube-proxy's iptables mode writes
(pkg/proxy/iptables/proxier.go, see shared/reference/kube-proxy-iptables.md): the same chains,
names, rule shapes and order, so what a learner reads with ``iptables -t nat -S`` on a kubelab
node holds on a real cluster.

Naming scheme (kube-proxy's, so a chain name tells which service port / endpoint it belongs to):
- ``KUBE-SVC-<h>`` cluster-policy dispatch, ``KUBE-SVL-<h>`` local-policy dispatch,
  ``KUBE-EXT-<h>`` external destinations, ``KUBE-FW-<h>`` loadBalancerSourceRanges, where
  ``h = base32(sha256("ns/name:port" + protocol))[:16]``;
- ``KUBE-SEP-<base32(sha256("ns/name:port" + protocol + "ip:port"))[:16]>`` per endpoint;
- fixed chains ``KUBE-SERVICES``, ``KUBE-NODEPORTS``, ``KUBE-EXTERNAL-SERVICES``,
  ``KUBE-POSTROUTING``, ``KUBE-MARK-MASQ``, ``KUBE-FORWARD``, ``KUBE-PROXY-FIREWALL``,
  ``KUBE-FIREWALL`` and the empty ``KUBE-PROXY-CANARY`` (mangle, nat, filter).
Everything the proxy owns matches ``owned_chain()``; ``cleanup`` removes exactly those.

Structure: each service port renders to a ``Fragment`` on its own (``render_service_port``), and
``assemble`` joins fragments with the fixed chains. The proxier keeps fragments between syncs and
re-renders only the service ports that changed, which is what makes a partial sync (KEP-3453)
cheap at 10k services.

Long function kept whole: ``render_service_port`` (~200 lines) is kube-proxy's per-service-port
section of ``syncProxyRules`` in the same order, so it can be read against proxier.go line by line.

Concurrency: pure functions over immutable values; thread-safe.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import ipaddress
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from proxy.model import (
    Endpoint,
    ServicePort,
    merge_slices,
    node_addresses,
    parse_endpoint_slice,
    parse_service,
)

log = logging.getLogger(__name__)

TABLES = ("filter", "nat", "mangle")

KUBE_SERVICES = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS = "KUBE-NODEPORTS"
KUBE_POSTROUTING = "KUBE-POSTROUTING"
KUBE_MARK_MASQ = "KUBE-MARK-MASQ"
KUBE_FORWARD = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL = "KUBE-PROXY-FIREWALL"
KUBE_FIREWALL = "KUBE-FIREWALL"
CANARY = "KUBE-PROXY-CANARY"

# Prefixes of per-service chains (all in nat); a chain with one of these is ours.
SERVICE_CHAIN_PREFIXES = ("KUBE-SVC-", "KUBE-SVL-", "KUBE-EXT-", "KUBE-FW-", "KUBE-SEP-")
FIXED_CHAINS = {
    "filter": (
        KUBE_NODEPORTS,
        KUBE_SERVICES,
        KUBE_EXTERNAL_SERVICES,
        KUBE_FIREWALL,
        KUBE_FORWARD,
        KUBE_PROXY_FIREWALL,
        CANARY,
    ),
    "nat": (KUBE_NODEPORTS, KUBE_SERVICES, KUBE_MARK_MASQ, KUBE_POSTROUTING, CANARY),
    "mangle": (CANARY,),
}
# Chains whose rules may sit in any order except that the rules listed last stay last: one
# rule per service port, each matching its own destination. Backends may patch these rule by
# rule (delete + insert at the top) instead of rewriting them whole.
ORDER_FREE_CHAINS = {
    ("nat", KUBE_SERVICES),
    ("nat", KUBE_NODEPORTS),
    ("filter", KUBE_SERVICES),
    ("filter", KUBE_EXTERNAL_SERVICES),
    ("filter", KUBE_NODEPORTS),
    ("filter", KUBE_PROXY_FIREWALL),
}
NODEPORTS_LAST_COMMENT = "kubernetes service nodeports; NOTE: this must be the last rule in this chain"


def owned_chain(table: str, chain: str) -> bool:
    """True for every chain the proxy creates (and ``cleanup`` removes) in ``table``."""
    if chain in FIXED_CHAINS.get(table, ()):
        return True
    return table == "nat" and chain.startswith(SERVICE_CHAIN_PREFIXES)


@dataclass(frozen=True)
class Jump:
    """A hook from a built-in chain into one of ours (kube-proxy's iptablesJumpChains)."""

    table: str
    chain: str  # the built-in chain
    target: str
    comment: str
    extra: str = ""

    @property
    def rule(self) -> str:
        parts = [self.extra] if self.extra else []
        if self.comment:
            parts.append(f'-m comment --comment "{self.comment}"')
        parts.append(f"-j {self.target}")
        return " ".join(parts)


_NEW = "-m conntrack --ctstate NEW"


def jumps(options: ProxyOptions) -> tuple[Jump, ...]:
    out = [
        Jump("filter", "INPUT", KUBE_EXTERNAL_SERVICES, "kubernetes externally-visible service portals", _NEW),
        Jump("filter", "FORWARD", KUBE_EXTERNAL_SERVICES, "kubernetes externally-visible service portals", _NEW),
        Jump("filter", "INPUT", KUBE_NODEPORTS, "kubernetes health check service ports"),
        Jump("filter", "FORWARD", KUBE_SERVICES, "kubernetes service portals", _NEW),
        Jump("filter", "OUTPUT", KUBE_SERVICES, "kubernetes service portals", _NEW),
        Jump("filter", "FORWARD", KUBE_FORWARD, "kubernetes forwarding rules"),
        Jump("filter", "INPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
        Jump("filter", "OUTPUT", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
        Jump("filter", "FORWARD", KUBE_PROXY_FIREWALL, "kubernetes load balancer firewall", _NEW),
        Jump("nat", "OUTPUT", KUBE_SERVICES, "kubernetes service portals"),
        Jump("nat", "PREROUTING", KUBE_SERVICES, "kubernetes service portals"),
        Jump("nat", "POSTROUTING", KUBE_POSTROUTING, "kubernetes postrouting rules"),
    ]
    if options.localhost_nodeports:
        out += [Jump("filter", "INPUT", KUBE_FIREWALL, ""), Jump("filter", "OUTPUT", KUBE_FIREWALL, "")]
    return tuple(out)


@dataclass(frozen=True)
class ProxyOptions:
    """The proxy's flags that change rules (kube-proxy's names in comments)."""

    node_name: str = ""
    cluster_cidr: str = "10.244.0.0/16"  # --cluster-cidr; "" disables the local-traffic detector
    node_ips: tuple[str, ...] = ()  # --node-ip (defaults to the Node's addresses)
    masquerade_bit: int = 14  # --iptables-masquerade-bit
    masquerade_all: bool = False  # --masquerade-all
    localhost_nodeports: bool = True  # --iptables-localhost-nodeports (needs route_localnet=1)
    random_fully: bool = False  # MASQUERADE --random-fully
    conntrack_liberal: bool = False  # nf_conntrack_tcp_be_liberal=1: no INVALID drop

    @property
    def mark(self) -> str:
        return f"{1 << self.masquerade_bit:#x}"


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # RFC 4648 base32, as Go's StdEncoding
_B32_PAIRS = [a + b for a in _B32 for b in _B32]  # 10 bits -> 2 characters


@functools.lru_cache(maxsize=200_000)
def _hash(text: str) -> str:
    # 16 base32 characters are exactly the first 10 bytes (80 bits = 8 pairs of 10 bits).
    # Looked up pair by pair: base64.b32encode is pure Python here and cost more than the
    # sha256 itself on a first sync's 6 hashes per service port (tests check it agrees).
    n = int.from_bytes(hashlib.sha256(text.encode()).digest()[:10], "big")
    t = _B32_PAIRS
    return (
        t[n >> 70]
        + t[(n >> 60) & 1023]
        + t[(n >> 50) & 1023]
        + t[(n >> 40) & 1023]
        + t[(n >> 30) & 1023]
        + t[(n >> 20) & 1023]
        + t[(n >> 10) & 1023]
        + t[n & 1023]
    )


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector while building a big ruleset.

    Rendering allocates hundreds of thousands of small, acyclic objects; each generation-2
    collection walks all of them, which made a 10k-service render 6× slower (7.5 s vs 1.3 s).
    Reference counting still frees everything; the collector resumes afterwards.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def service_chain(prefix: str, spn: str, protocol: str) -> str:
    """``KUBE-SVC-``/``SVL``/``EXT``/``FW`` + base32(sha256(spn + protocol))[:16]."""
    return f"{prefix}{_hash(spn + protocol)}"


def endpoint_chain(spn: str, protocol: str, endpoint: str) -> str:
    """``KUBE-SEP-`` + base32(sha256(spn + protocol + "ip:port"))[:16]."""
    return f"KUBE-SEP-{_hash(spn + protocol + endpoint)}"


@functools.lru_cache(maxsize=1024)
def probability(n: int) -> str:
    """kube-proxy's ``%0.10f`` of 1/n (the i-th of n endpoints gets 1/(n-i))."""
    return f"{1.0 / n:0.10f}"


@dataclass(frozen=True)
class Fragment:
    """The rules of one service port: lines for the shared chains plus its own nat chains."""

    nat_services: tuple[str, ...] = ()
    nat_nodeports: tuple[str, ...] = ()
    filter_services: tuple[str, ...] = ()
    filter_external: tuple[str, ...] = ()
    filter_nodeports: tuple[str, ...] = ()
    filter_firewall: tuple[str, ...] = ()
    # nat, in render order. Lists shared (never mutated) with every Ruleset assembled from this
    # fragment and with the backend's record of what it applied: an unchanged chain is then the
    # very same object, which the planner recognises without comparing rules.
    chains: Mapping[str, list[str]] = field(default_factory=dict)


def categorize(
    sp: ServicePort, endpoints: Sequence[Endpoint], node_name: str
) -> tuple[list[Endpoint], list[Endpoint], list[Endpoint], bool]:
    """kube-proxy's CategorizeEndpoints: (cluster, local, all reachable, has any usable endpoint).

    Ready endpoints are used; when none is ready, serving-and-terminating ones are (so a rolling
    update does not black-hole connections); not-ready ones never are.
    """
    cluster: list[Endpoint] = []
    local: list[Endpoint] = []
    has_any = False
    if sp.uses_cluster_endpoints:
        cluster = [e for e in endpoints if e.ready]
        if not cluster:
            cluster = [e for e in endpoints if e.serving and e.terminating]
        has_any = bool(cluster)
    if not sp.uses_local_endpoints:
        return cluster, local, cluster, has_any
    local_ready = local_term = False
    for e in endpoints:
        if e.ready:
            has_any = True
            local_ready = local_ready or e.node_name == node_name
        elif e.serving and e.terminating:
            has_any = True
            local_term = local_term or e.node_name == node_name
    if local_ready:
        local = [e for e in endpoints if e.node_name == node_name and e.ready]
    elif local_term:
        local = [e for e in endpoints if e.node_name == node_name and e.serving and e.terminating]
    if not sp.uses_cluster_endpoints:
        return cluster, local, local, has_any
    seen = {(e.ip, e.port) for e in cluster}
    reachable = cluster + [e for e in local if (e.ip, e.port) not in seen]
    return cluster, local, reachable, has_any


def render_service_port(
    sp: ServicePort, endpoints: Sequence[Endpoint], options: ProxyOptions
) -> Fragment:
    """The rules of one service port, in kube-proxy's order (proxier.go syncProxyRules)."""
    spn = str(sp.name)
    p = sp.protocol
    port = sp.port
    cluster_eps, local_eps, reachable, has_endpoints = categorize(sp, endpoints, options.node_name)

    hash_prefix = spn + p
    h = _hash(hash_prefix)  # service_chain()'s hash, once for all four prefixes
    svc_chain = "KUBE-SVC-" + h
    svl_chain = "KUBE-SVL-" + h
    ext_chain = "KUBE-EXT-" + h
    fw_chain = "KUBE-FW-" + h
    # Per reachable endpoint: its "ip:port" and its chain, computed once (each is used 3-4 times).
    sep: dict[tuple[str, int], tuple[str, str]] = {}
    for e in reachable:
        text = f"{e.ip}:{e.port}"
        sep[(e.ip, e.port)] = (text, "KUBE-SEP-" + _hash(hash_prefix + text))

    uses_cluster_chain = bool(cluster_eps) and sp.uses_cluster_endpoints
    uses_local_chain = bool(local_eps) and sp.uses_local_endpoints
    internal_chain, has_internal = svc_chain, has_endpoints
    if sp.internal_local:
        internal_chain = svl_chain
        has_internal = has_internal and bool(local_eps)
    external_policy_chain, has_external = svc_chain, has_endpoints
    if sp.external_local:
        external_policy_chain = svl_chain
        has_external = has_external and bool(local_eps)
    uses_ext_chain = has_endpoints and sp.externally_accessible
    lb_chain = ext_chain
    uses_fw = has_endpoints and bool(sp.load_balancer_ips) and bool(sp.load_balancer_source_ranges)
    if uses_fw:
        lb_chain = fw_chain

    int_target = ext_target = int_comment = ext_comment = ""
    if not has_endpoints:
        int_target = ext_target = "REJECT"
        int_comment = ext_comment = f'"{spn} has no endpoints"'
    else:
        if not has_internal:
            int_target, int_comment = "DROP", f'"{spn} has no local endpoints"'
        if not has_external:
            ext_target, ext_comment = "DROP", f'"{spn} has no local endpoints"'

    match = f"-m {p} -p {p}"
    nat_services: list[str] = []
    nat_nodeports: list[str] = []
    f_services: list[str] = []
    f_external: list[str] = []
    f_nodeports: list[str] = []
    f_firewall: list[str] = []
    chains: dict[str, list[str]] = {}

    # Capture the cluster IP.
    if has_internal:
        nat_services.append(
            f'-m comment --comment "{spn} cluster IP" {match} -d {sp.cluster_ip} --dport {port} '
            f"-j {internal_chain}"
        )
    else:
        f_services.append(
            f"-m comment --comment {int_comment} {match} -d {sp.cluster_ip} --dport {port} -j {int_target}"
        )
    # Capture external IPs.
    for ip in sp.external_ips:
        if has_endpoints:
            nat_services.append(
                f'-m comment --comment "{spn} external IP" {match} -d {ip} --dport {port} -j {ext_chain}'
            )
        if not has_external:
            f_external.append(
                f"-m comment --comment {ext_comment} {match} -d {ip} --dport {port} -j {ext_target}"
            )
    # Capture load-balancer ingress IPs.
    for ip in sp.load_balancer_ips:
        if has_endpoints:
            nat_services.append(
                f'-m comment --comment "{spn} loadbalancer IP" {match} -d {ip} --dport {port} -j {lb_chain}'
            )
        if uses_fw:
            f_firewall.append(
                f'-m comment --comment "{spn} traffic not accepted by {fw_chain}" {match} -d {ip} '
                f"--dport {port} -j DROP"
            )
    if not has_external:
        for ip in sp.load_balancer_ips:
            f_external.append(
                f"-m comment --comment {ext_comment} {match} -d {ip} --dport {port} -j {ext_target}"
            )
    # Capture node ports (on every local address: the addrtype rule at the end of KUBE-SERVICES).
    if sp.node_port:
        if has_endpoints:
            nat_nodeports.append(f"-m comment --comment {spn} {match} --dport {sp.node_port} -j {ext_chain}")
        if not has_external:
            f_external.append(
                f"-m comment --comment {ext_comment} -m addrtype --dst-type LOCAL {match} "
                f"--dport {sp.node_port} -j {ext_target}"
            )
    if sp.health_check_node_port:
        f_nodeports.append(
            f'-m comment --comment "{spn} health check node port" -m tcp -p tcp '
            f"--dport {sp.health_check_node_port} -j ACCEPT"
        )

    # Internal traffic: masquerade what comes from outside the cluster CIDR.
    internal_rules: list[str] = []
    if has_internal:
        args = f'-m comment --comment "{spn} cluster IP" {match} -d {sp.cluster_ip} --dport {port}'
        if options.masquerade_all:
            internal_rules.append(f"{args} -j {KUBE_MARK_MASQ}")
        elif options.cluster_cidr:
            internal_rules.append(f"{args} ! -s {options.cluster_cidr} -j {KUBE_MARK_MASQ}")

    # External traffic chain.
    if uses_ext_chain:
        ext: list[str] = []
        if not sp.external_local:
            ext.append(
                f'-m comment --comment "masquerade traffic for {spn} external destinations" -j {KUBE_MARK_MASQ}'
            )
        else:
            if options.cluster_cidr:
                ext.append(
                    f'-m comment --comment "pod traffic for {spn} external destinations" '
                    f"-s {options.cluster_cidr} -j {svc_chain}"
                )
            ext.append(
                f'-m comment --comment "masquerade LOCAL traffic for {spn} external destinations" '
                f"-m addrtype --src-type LOCAL -j {KUBE_MARK_MASQ}"
            )
            ext.append(
                f'-m comment --comment "route LOCAL traffic for {spn} external destinations" '
                f"-m addrtype --src-type LOCAL -j {svc_chain}"
            )
        if has_external:
            ext.append(f"-j {external_policy_chain}")
        chains[ext_chain] = ext

    if uses_fw:
        fw_args = f'-m comment --comment "{spn} loadbalancer IP"'
        fw = [f"{fw_args} -s {src} -j {ext_chain}" for src in sp.load_balancer_source_ranges]
        allow_from_node = any(
            ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(src)
            for src in sp.load_balancer_source_ranges
            for ip in options.node_ips
        )
        if allow_from_node:
            fw += [f"{fw_args} -s {ip} -j {ext_chain}" for ip in sp.load_balancer_ips]
        fw.append(f'-m comment --comment "other traffic to {spn} will be dropped by KUBE-PROXY-FIREWALL"')
        chains[fw_chain] = fw

    def dispatch(chain: str, eps: Sequence[Endpoint]) -> list[str]:
        rules = list(internal_rules) if chain == internal_chain else []
        if sp.affinity_timeout:
            for e in eps:
                text, name = sep[(e.ip, e.port)]
                rules.append(
                    f'-m comment --comment "{spn} -> {text}" -m recent --name {name} --rcheck '
                    f"--seconds {sp.affinity_timeout} --reap -j {name}"
                )
        n = len(eps)
        for i, e in enumerate(eps):
            text, name = sep[(e.ip, e.port)]
            if i < n - 1:
                rules.append(
                    f'-m comment --comment "{spn} -> {text}" -m statistic --mode random '
                    f"--probability {probability(n - i)} -j {name}"
                )
            else:
                rules.append(f'-m comment --comment "{spn} -> {text}" -j {name}')
        return rules

    if uses_cluster_chain:
        chains[svc_chain] = dispatch(svc_chain, cluster_eps)
    if uses_local_chain:
        chains[svl_chain] = dispatch(svl_chain, local_eps)
    masq = f"-m comment --comment {spn} -s "
    dnat = f" {match} -j DNAT --to-destination "
    for e in reachable:
        text, name = sep[(e.ip, e.port)]
        affinity = f" -m recent --name {name} --set" if sp.affinity_timeout else ""
        chains[name] = [
            f"{masq}{e.ip} -j {KUBE_MARK_MASQ}",
            f"-m comment --comment {spn}{affinity}{dnat}{text}",
        ]
    return Fragment(
        nat_services=tuple(nat_services),
        nat_nodeports=tuple(nat_nodeports),
        filter_services=tuple(f_services),
        filter_external=tuple(f_external),
        filter_nodeports=tuple(f_nodeports),
        filter_firewall=tuple(f_firewall),
        chains=chains,
    )


@dataclass
class Ruleset:
    """The complete desired content of every chain the proxy owns, table by table.

    ``tables[table][chain]`` is the chain's rules in order, each the text after ``-A CHAIN``.
    ``owners`` maps each per-service nat chain to its service port's string (for logs and the
    partial-sync bookkeeping). ``errors`` lists the objects skipped as unprogrammable.
    """

    tables: dict[str, dict[str, list[str]]]
    jumps: tuple[Jump, ...] = ()
    owners: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def chain_count(self) -> int:
        return sum(len(chains) for chains in self.tables.values())

    def rule_count(self) -> int:
        return sum(len(r) for chains in self.tables.values() for r in chains.values())

    def text(self, tables: Iterable[str] = TABLES) -> str:
        """iptables-save form (what ``iptables-restore`` reads): declarations, then rules."""
        out: list[str] = []
        for table in tables:
            chains = self.tables.get(table)
            if chains is None:
                continue
            out.append(f"*{table}")
            out.extend(f":{name} - [0:0]" for name in chains)
            for name, rules in chains.items():
                prefix = f"-A {name} "
                out.extend(prefix + r for r in rules)
            out.append("COMMIT")
        return "\n".join(out) + "\n"


def assemble(
    fragments: Iterable[tuple[str, Fragment]], options: ProxyOptions, *, service_chains: bool = True
) -> Ruleset:
    """Join per-service-port fragments (in the given order) with the fixed chains.

    ``service_chains=False`` builds only the shared and fixed chains (the proxier keeps the
    per-service chains itself and adds them without walking every fragment).
    """
    mark = options.mark
    filter_nodeports: list[str] = []
    filter_services: list[str] = []
    filter_external: list[str] = []
    filter_firewall: list[str] = []
    nat_nodeports: list[str] = []
    nat_services: list[str] = []
    per_service: dict[str, list[str]] = {}
    owners: dict[str, str] = {}
    for spn, frag in fragments:
        filter_nodeports.extend(frag.filter_nodeports)
        filter_services.extend(frag.filter_services)
        filter_external.extend(frag.filter_external)
        filter_firewall.extend(frag.filter_firewall)
        nat_nodeports.extend(frag.nat_nodeports)
        nat_services.extend(frag.nat_services)
        if service_chains:
            for name, rules in frag.chains.items():
                per_service[name] = rules  # shared, not copied (see Fragment.chains)
                owners[name] = spn
    if options.localhost_nodeports:
        nat_services.append(
            f'-m comment --comment "{NODEPORTS_LAST_COMMENT}" -m addrtype --dst-type LOCAL -j {KUBE_NODEPORTS}'
        )
    else:
        nat_services.append(
            f'-m comment --comment "{NODEPORTS_LAST_COMMENT}" -m addrtype --dst-type LOCAL '
            f"! -d 127.0.0.0/8 -j {KUBE_NODEPORTS}"
        )
    masquerade = "-j MASQUERADE --random-fully" if options.random_fully else "-j MASQUERADE"
    forward = []
    if not options.conntrack_liberal:
        forward.append("-m conntrack --ctstate INVALID -j DROP")
    forward += [
        f'-m comment --comment "kubernetes forwarding rules" -m mark --mark {mark}/{mark} -j ACCEPT',
        '-m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED '
        "-j ACCEPT",
    ]
    filter_chains: dict[str, list[str]] = {
        KUBE_NODEPORTS: filter_nodeports,
        KUBE_SERVICES: filter_services,
        KUBE_EXTERNAL_SERVICES: filter_external,
    }
    if options.localhost_nodeports:
        filter_chains[KUBE_FIREWALL] = [
            '-m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 '
            "-m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP"
        ]
    filter_chains[KUBE_FORWARD] = forward
    filter_chains[KUBE_PROXY_FIREWALL] = filter_firewall
    filter_chains[CANARY] = []
    nat_chains: dict[str, list[str]] = {
        KUBE_NODEPORTS: nat_nodeports,
        KUBE_SERVICES: nat_services,
        KUBE_MARK_MASQ: [f"-j MARK --or-mark {mark}"],
        KUBE_POSTROUTING: [
            f"-m mark ! --mark {mark}/{mark} -j RETURN",
            f"-j MARK --xor-mark {mark}",
            f'-m comment --comment "kubernetes service traffic requiring SNAT" {masquerade}',
        ],
        CANARY: [],
    }
    nat_chains.update(per_service)
    return Ruleset(
        tables={"filter": filter_chains, "nat": nat_chains, "mangle": {CANARY: []}},
        jumps=jumps(options),
        owners=owners,
    )


@dataclass
class Model:
    """Parsed cluster state: service ports and their endpoints, plus what was skipped."""

    ports: dict[str, ServicePort]  # str(ServicePortName)+"/"+protocol -> port
    endpoints: dict[str, tuple[Endpoint, ...]]
    errors: list[str]


def port_key(sp: ServicePort) -> str:
    return f"{sp.name}/{sp.protocol}"


def build_model(services: Iterable[Mapping[str, Any]], endpoint_slices: Iterable[Mapping[str, Any]]) -> Model:
    errors: list[str] = []
    ports: dict[str, ServicePort] = {}
    for svc in services:
        parsed, errs = parse_service(svc)
        errors += errs
        for sp in parsed:
            ports[port_key(sp)] = sp
    by_service: dict[str, list[Any]] = {}
    for es in endpoint_slices:
        info, errs = parse_endpoint_slice(es)
        errors += errs
        if info is not None:
            by_service.setdefault(info.service, []).append(info)
    merged = {svc: merge_slices(slices) for svc, slices in by_service.items()}
    endpoints = {
        key: merged.get(sp.name.service, {}).get((sp.name.port, sp.protocol), ())
        for key, sp in ports.items()
    }
    return Model(ports, endpoints, errors)


def render(
    services: Iterable[Mapping[str, Any]],
    endpoint_slices: Iterable[Mapping[str, Any]],
    node: Mapping[str, Any] | None = None,
    options: ProxyOptions | None = None,
) -> Ruleset:
    """The whole ruleset for these objects on this node. Bad objects are logged and skipped."""
    options = options or ProxyOptions()
    if node is not None:
        if not options.node_name:
            options = _replace(options, node_name=(node.get("metadata") or {}).get("name", ""))
        if not options.node_ips:
            options = _replace(options, node_ips=tuple(node_addresses(node)))
    with no_gc():
        model = build_model(services, endpoint_slices)
        for err in model.errors:
            log.warning("skipping what cannot be programmed: %s", err)
        frags = [
            (str(model.ports[k].name), render_service_port(model.ports[k], model.endpoints[k], options))
            for k in sorted(model.ports)
        ]
        ruleset = assemble(frags, options)
    ruleset.errors = list(model.errors)
    return ruleset


def _replace(options: ProxyOptions, **changes: Any) -> ProxyOptions:
    from dataclasses import replace

    return replace(options, **changes)
