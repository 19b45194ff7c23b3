"""A packet tracer over rendered iptables rules (the idea of kube-proxy's tracePacket test helper).

Given a packet (source, destination, protocol, destination port) it walks the nat hooks the way
the kernel would for a new connection, then the filter chains kube-proxy hooks, then nat
POSTROUTING, and says where the packet ends up: the DNAT targets it may reach (every branch of a
``-m statistic`` rule is followed, so a 3-endpoint service yields all three), or ``REJECT`` /
``DROP``, or ``ACCEPT`` when nothing applies, and whether it is masqueraded.

It understands exactly the matches our renderer emits: -s/-d (with !), -p, --dport, -m addrtype
--src-type/--dst-type LOCAL, -m statistic, -m recent (``--rcheck`` never matches: no history),
-m mark (the masquerade bit), -m conntrack (a new connection), comments, and the targets
(user chains, RETURN, MARK --or-mark/--xor-mark, DNAT, MASQUERADE, ACCEPT, DROP, REJECT).
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, replace

from proxy.rules import Ruleset


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str
    proto: str
    dport: int
    mark: bool = False
    dnat: str = ""


@dataclass(frozen=True)
class Trace:
    output: str  # "10.180.0.1:80, 10.180.0.2:80" | "REJECT" | "DROP" | "ACCEPT"
    masq: bool | None  # None when branches disagree


def _in(addr: str, spec: str) -> bool:
    return ipaddress.IPv4Address(addr) in ipaddress.IPv4Network(spec, strict=False)


class Tracer:
    def __init__(self, tables: dict[str, dict[str, list[str]]], local_ips: tuple[str, ...] = ()) -> None:
        self.tables = tables
        self.local_ips = set(local_ips) | {"127.0.0.1"}

    @classmethod
    def of(cls, ruleset: Ruleset, local_ips: tuple[str, ...] = ()) -> Tracer:
        tables = {t: {c: list(r) for c, r in chains.items()} for t, chains in ruleset.tables.items()}
        for j in reversed(ruleset.jumps):  # prepended in order: the last one ends up first
            tables[j.table].setdefault(j.chain, []).insert(0, j.rule)
        return cls(tables, local_ips)

    def _local(self, addr: str) -> bool:
        return addr in self.local_ips or addr.startswith("127.")

    def _match(self, words: list[str], p: Packet) -> str:
        """'yes', 'no' or 'maybe' (a statistic match: both branches are possible)."""
        result = "yes"
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
                ok = self._local(p.dst)
            elif w == "--src-type":
                ok = self._local(p.src)
            elif w == "--mark":
                ok = p.mark
            elif w == "--ctstate":
                ok = "NEW" in words[i + 1].split(",")
            elif w == "--probability":
                result = "maybe"
            elif w == "--rcheck":
                return "no"
            elif w in ("-j", "-g"):
                break
            if ok is not None:
                if ok == neg:
                    return "no"
                i += 2
            else:
                i += 1
            neg = False
        return result

    def _target(self, table: str, words: list[str], p: Packet) -> list[tuple[Packet, str]]:
        if "-j" not in words:
            return [(p, "CONTINUE")]
        t = words[words.index("-j") + 1]
        if t in self.tables[table]:
            return [(q, "CONTINUE" if v == "RETURN" else v) for q, v in self._run(table, t, p)]
        if t == "MARK":  # only the masquerade bit matters here
            if "--or-mark" in words:
                mark = True
            elif "--xor-mark" in words:
                mark = not p.mark
            else:  # iptables-save's canonical --set-xmark VALUE/MASK: (mark & ~MASK) ^ VALUE
                value, _, mask = words[words.index("--set-xmark") + 1].partition("/")
                keep = p.mark and not int(mask or "0xffffffff", 16) & 0x4000
                mark = keep != bool(int(value, 16) & 0x4000)
            return [(replace(p, mark=mark), "CONTINUE")]
        if t == "DNAT":
            to = words[words.index("--to-destination") + 1]
            ip, port = to.split(":")
            return [(replace(p, dst=ip, dport=int(port), dnat=to), "DNAT")]
        return [(p, t)]

    def _run(self, table: str, chain: str, p: Packet, start: int = 0) -> list[tuple[Packet, str]]:
        rules = self.tables[table].get(chain, [])
        for i in range(start, len(rules)):
            words = shlex.split(rules[i])
            m = self._match(words, p)
            if m == "no":
                continue
            out: list[tuple[Packet, str]] = []
            for q, v in self._target(table, words, p):
                out += self._run(table, chain, q, i + 1) if v == "CONTINUE" else [(q, v)]
            if m == "maybe":
                out += self._run(table, chain, p, i + 1)
            return out
        return [(p, "RETURN")]

    def trace(self, src: str, dst: str, dport: int, proto: str = "tcp") -> Trace:
        p = Packet(src, dst, proto, dport)
        hook = "OUTPUT" if self._local(src) else "PREROUTING"  # locally generated or arriving
        outputs: set[str] = set()
        masqs: set[bool] = set()
        for q, _ in self._run("nat", hook, p):
            verdict = ""
            if "filter" in self.tables:
                fhooks = ["OUTPUT"] if hook == "OUTPUT" else (
                    ["INPUT"] if self._local(q.dst) else ["FORWARD"]
                )
                for fh in fhooks:
                    for _, v in self._run("filter", fh, q):
                        if v in ("DROP", "REJECT"):
                            verdict = v
            if verdict:
                outputs.add(verdict)
                continue
            outputs.add(q.dnat or "ACCEPT")
            post = self._run("nat", "POSTROUTING", q)
            masqs.add(any(v == "MASQUERADE" for _, v in post))
        masq = masqs.pop() if len(masqs) == 1 else (None if masqs else False)
        return Trace(", ".join(sorted(outputs)), masq)
