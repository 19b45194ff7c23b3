"""A packet tracer over iptables rules: which chains a new connection walks, and where it ends up.

Role: the pure core of ``kubelab trace`` (and the tests' check that rendered rules *behave* like
kube-proxy's, the idea of kube-proxy's ``tracePacket`` test helper). Given a packet (source,
destination, protocol, destination port) it walks the nat hook the kernel would use for a new
connection (``PREROUTING`` for a packet arriving at the node, ``OUTPUT`` for one the node sends
itself), then the filter hooks kube-proxy uses, then nat ``POSTROUTING``, and reports:

- every *branch*: a ``-m statistic --mode random`` rule may or may not match, so each endpoint of
  a service is one branch, with its chance (the product of the probabilities on its way);
- each branch's *walk*: the rules that matched, in order (``Hop``: table, chain, rule, target,
  comment, probability), e.g. PREROUTING → KUBE-SERVICES → KUBE-SVC-… → KUBE-SEP-… → DNAT;
- the verdict: ``DNAT`` (to ``ip:port``), ``ACCEPT`` (nothing rewrote it), ``REJECT``/``DROP``
  (the filter table's KUBE-SERVICES / KUBE-EXTERNAL-SERVICES), and whether the packet carries
  the masquerade mark and is SNATed in POSTROUTING (and by which rule).

Inputs are iptables rules as text: a ``proxy.rules.Ruleset`` (``Tracer.of``) or real
``iptables-save`` output (``Tracer.from_save``), whose canonical forms (``/32``, ``--set-xmark``,
11-decimal probabilities, reordered matches) are understood too. It knows exactly the matches
kube-proxy and our CNI plugin write: -s/-d (with !), -p, --dport, -m addrtype
--src-type/--dst-type LOCAL, -m statistic, -m recent (``--rcheck`` never matches: a trace has no
history; the walk reports the affinity rules it passed), -m mark (the masquerade bit), -m
conntrack (a new connection), comments; targets: user chains, RETURN, MARK, DNAT, MASQUERADE,
ACCEPT, DROP, REJECT. Other matches (interfaces, …) are taken as matching.

Concurrency: pure functions over immutable inputs; no kernel, no I/O.
"""

from __future__ import annotations

import functools
import ipaddress
import shlex
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from proxy.rules import Ruleset

Tables = dict[str, dict[str, list[str]]]
MASQ_BIT = 0x4000


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    proto: str
    dport: int
    mark: bool = False  # the masquerade bit (0x4000)
    dnat: str = ""  # "ip:port" once DNATed


@dataclass(frozen=True)
class Hop:
    """One rule that matched and acted (jumped, marked, rewrote or decided)."""

    table: str
    chain: str
    rule: str  # the rule's text after ``-A CHAIN``
    target: str
    comment: str = ""
    probability: float | None = None  # the ``--probability`` of a statistic match it passed

    def args(self) -> list[str]:
        return _split(self.rule)


@dataclass(frozen=True)
class Branch:
    """One way a new connection can go (one endpoint of a service, or the only way)."""

    packet: Packet  # after the nat hook: dst rewritten when DNATed, mark set when marked
    chance: float  # 1.0 unless statistic rules split the way
    nat: tuple[Hop, ...]  # the nat hook's walk (PREROUTING or OUTPUT)
    verdict: str  # "DNAT" | "ACCEPT" | "REJECT" | "DROP"
    filter: tuple[Hop, ...] = ()  # the filter hooks' rules that decided (REJECT/DROP/ACCEPT)
    post: tuple[Hop, ...] = ()  # nat POSTROUTING's walk
    masquerade: bool = False
    delivered_locally: bool = False  # the (DNATed) destination is one of the node's addresses

    @property
    def endpoint(self) -> str:
        return self.packet.dnat

    @property
    def mark_reasons(self) -> tuple[Hop, ...]:
        """The rules that jumped to KUBE-MARK-MASQ (why the packet will be masqueraded)."""
        return tuple(h for h in self.nat if h.target == "KUBE-MARK-MASQ")

    @property
    def snat_rule(self) -> Hop | None:
        return next((h for h in self.post if h.target in ("MASQUERADE", "SNAT")), None)


@dataclass(frozen=True)
class Walk:
    hook: str  # "PREROUTING" or "OUTPUT"
    packet: Packet
    branches: tuple[Branch, ...]
    # ClientIP session affinity: (chain, seconds) of each dispatch chain passed that has
    # ``-m recent --rcheck`` rules (a returning client skips the random choice).
    affinity: tuple[tuple[str, int], ...] = field(default=())

    @property
    def endpoints(self) -> tuple[str, ...]:
        return tuple(b.endpoint for b in self.branches if b.verdict == "DNAT")


@dataclass(frozen=True)
class Trace:
    output: str  # "10.180.0.1:80, 10.180.0.2:80" | "REJECT" | "DROP" | "ACCEPT"
    masq: bool | None  # None when branches disagree


@functools.lru_cache(maxsize=65536)
def _split_cached(rule: str) -> tuple[str, ...]:
    return tuple(shlex.split(rule))


def _split(rule: str) -> list[str]:
    return list(_split_cached(rule))


def _in(addr: str, spec: str) -> bool:
    return ipaddress.IPv4Address(addr) in ipaddress.IPv4Network(spec, strict=False)


def _arg(words: list[str], flag: str) -> str:
    return words[words.index(flag) + 1] if flag in words else ""


def parse_save(text: str) -> Tables:
    """``iptables-save`` output → ``{table: {chain: [rule text after "-A CHAIN"]}}``.

    Built-in chains are included (so the hooks into KUBE-* chains are walked as written).
    Raises ``ValueError`` naming the line on anything that is not iptables-save's format.
    """
    tables: Tables = {}
    current: dict[str, list[str]] | None = None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:], {})
        elif current is None:
            raise ValueError(f"iptables-save line {n}: {line!r} before any *table")
        elif line.startswith(":"):
            current.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            _, chain, *rest = line.split(" ", 2)
            current.setdefault(chain, []).append(rest[0] if rest else "")
        else:
            raise ValueError(f"iptables-save line {n}: unexpected {line!r}")
    return tables


_Out = tuple[Packet, str, tuple[Hop, ...], float]


class Tracer:
    def __init__(self, tables: Tables, local_ips: tuple[str, ...] = ()) -> None:
        self.tables = tables
        self.local_ips = set(local_ips) | {"127.0.0.1"}

    @classmethod
    def of(cls, ruleset: Ruleset, local_ips: tuple[str, ...] = ()) -> Tracer:
        """Over a rendered ruleset, with its hooks into the built-in chains installed."""
        tables = {t: {c: list(r) for c, r in chains.items()} for t, chains in ruleset.tables.items()}
        for j in reversed(ruleset.jumps):  # prepended in order: the last one ends up first
            tables[j.table].setdefault(j.chain, []).insert(0, j.rule)
        return cls(tables, local_ips)

    @classmethod
    def from_save(cls, text: str, local_ips: tuple[str, ...] = ()) -> Tracer:
        """Over a node's real ``iptables-save`` output."""
        return cls(parse_save(text), local_ips)

    def is_local(self, addr: str) -> bool:
        return addr in self.local_ips or addr.startswith("127.")

    def _match(self, words: list[str], p: Packet) -> tuple[str, float | None]:
        """('yes' | 'no' | 'maybe', probability): 'maybe' is a statistic match (both ways possible)."""
        result, prob = "yes", None
        i, neg = 0, False
        while i < len(words):
            w = words[i]
            if w == "!":
                neg = True
                i += 1
                continue
            ok: bool | None = None
            if w == "-s":
                ok = _in(p.src, words[i + 1])
            elif w == "-d":
                ok = _in(p.dst, words[i + 1])
            elif w == "-p":
                ok = p.proto == words[i + 1]
            elif w == "--dport":
                ok = p.dport == int(words[i + 1])
            elif w == "--dst-type":
                ok = self.is_local(p.dst)
            elif w == "--src-type":
                ok = self.is_local(p.src)
            elif w == "--mark":
                ok = p.mark
            elif w == "--ctstate":
                ok = "NEW" in words[i + 1].split(",")
            elif w == "--probability":
                result, prob = "maybe", float(words[i + 1])
            elif w == "--rcheck":
                return "no", None
            elif w in ("-j", "-g"):
                break
            if ok is not None:
                if ok == neg:
                    return "no", None
                i += 2
            else:
                i += 1
            neg = False
        return result, prob

    def _target(self, table: str, words: list[str], p: Packet) -> list[_Out]:
        t = _arg(words, "-j")
        if not t:
            return [(p, "CONTINUE", (), 1.0)]
        if t in self.tables[table]:
            return [(q, "CONTINUE" if v == "RETURN" else v, h, c) for q, v, h, c in self._run(table, t, p)]
        if t == "MARK":  # only the masquerade bit matters here
            if "--or-mark" in words:
                mark = p.mark or bool(int(_arg(words, "--or-mark"), 16) & MASQ_BIT)
            elif "--xor-mark" in words:
                mark = p.mark != bool(int(_arg(words, "--xor-mark"), 16) & MASQ_BIT)
            else:  # iptables-save's canonical --set-xmark VALUE/MASK: (mark & ~MASK) ^ VALUE
                value, _, mask = _arg(words, "--set-xmark").partition("/")
                keep = p.mark and not int(mask or "0xffffffff", 16) & MASQ_BIT
                mark = keep != bool(int(value, 16) & MASQ_BIT)
            return [(replace(p, mark=mark), "CONTINUE", (), 1.0)]
        if t == "DNAT":
            to = _arg(words, "--to-destination")
            ip, _, port = to.partition(":")
            return [(replace(p, dst=ip, dport=int(port) if port else p.dport, dnat=to), "DNAT", (), 1.0)]
        return [(p, t, (), 1.0)]

    def _run(self, table: str, chain: str, p: Packet, start: int = 0) -> list[_Out]:
        rules = self.tables[table].get(chain, [])
        for i in range(start, len(rules)):
            words = _split(rules[i])
            m, prob = self._match(words, p)
            if m == "no":
                continue
            target = _arg(words, "-j")
            hop = (Hop(table, chain, rules[i], target, _arg(words, "--comment"), prob),) if target else ()
            taken = prob if (m == "maybe" and prob is not None) else 1.0
            out: list[_Out] = []
            for q, v, hops, ch in self._target(table, words, p):
                path, chance = hop + hops, ch * taken
                if v == "CONTINUE":
                    out += [(q2, v2, path + h2, chance * c2) for q2, v2, h2, c2 in self._run(table, chain, q, i + 1)]
                else:
                    out.append((q, v, path, chance))
            if m == "maybe":
                out += [(q2, v2, h2, c2 * (1.0 - taken)) for q2, v2, h2, c2 in self._run(table, chain, p, i + 1)]
            return [o for o in out if o[3] > 0.0]
        return [(p, "RETURN", (), 1.0)]

    def walk(self, src: str, dst: str, dport: int, proto: str = "tcp") -> Walk:
        """Every way a new connection from ``src`` to ``dst:dport`` can go through these rules."""
        p = Packet(src, dst, proto, dport)
        hook = "OUTPUT" if self.is_local(src) else "PREROUTING"  # locally generated or arriving
        branches: list[Branch] = []
        for q, _v, nat_hops, chance in self._run("nat", hook, p):
            local = self.is_local(q.dst)
            filt: list[Hop] = []
            verdict = "DNAT" if q.dnat else "ACCEPT"
            if "filter" in self.tables:
                fhooks = ["OUTPUT"] if hook == "OUTPUT" else (["INPUT"] if local else ["FORWARD"])
                for fh in fhooks:
                    for _, fv, fhops, _c in self._run("filter", fh, q):
                        if fv in ("DROP", "REJECT"):
                            verdict = fv
                            filt.extend(fhops)
            post: tuple[Hop, ...] = ()
            masq = False
            if verdict not in ("DROP", "REJECT") and "nat" in self.tables:
                outs = self._run("nat", "POSTROUTING", q)
                masq = any(v in ("MASQUERADE", "SNAT") for _, v, _, _ in outs)
                post = next((h for _, v, h, _ in outs if v in ("MASQUERADE", "SNAT")), outs[0][2] if outs else ())
            branches.append(Branch(q, chance, nat_hops, verdict, tuple(filt), post, masq, local))
        return Walk(hook, p, tuple(branches), self._affinity(branches))

    def _affinity(self, branches: list[Branch]) -> tuple[tuple[str, int], ...]:
        seen: dict[str, int] = {}
        for b in branches:
            for h in b.nat:
                target_rules = self.tables["nat"].get(h.target, [])
                for rule in target_rules:
                    words = _split(rule)
                    if "--rcheck" in words and h.target not in seen:
                        seen[h.target] = int(_arg(words, "--seconds") or 0)
        return tuple(seen.items())

    def trace(self, src: str, dst: str, dport: int, proto: str = "tcp") -> Trace:
        """The verdict only: every DNAT target (sorted) or REJECT/DROP/ACCEPT, and masquerade."""
        w = self.walk(src, dst, dport, proto)
        outputs: set[str] = set()
        masqs: set[bool] = set()
        for b in w.branches:
            if b.verdict in ("DROP", "REJECT"):
                outputs.add(b.verdict)
                continue
            outputs.add(b.packet.dnat or "ACCEPT")
            masqs.add(b.masquerade)
        masq = masqs.pop() if len(masqs) == 1 else (None if masqs else False)
        return Trace(", ".join(sorted(outputs)), masq)
