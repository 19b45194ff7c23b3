"""A packet-verdict interpreter for the filter rules kubelab renders (tests only).

``verdict(restore_text, packet)`` parses ``iptables-restore`` input and walks a packet through
FORWARD or INPUT (our jump first, then the default ACCEPT policy of a node namespace), honouring exactly
the matches and targets the policy planner emits: ``-s``/``-d`` CIDRs, ``-p``, ``--dport N[:M]``,
``--ctstate``, ``[!] --mark v/m``, ``-j ACCEPT|DROP|RETURN|MARK --set-xmark v/m|<chain>``. An
option it does not know fails the test rather than being ignored.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass


@dataclass
class Packet:
    src: str
    dst: str
    dport: int = 80
    proto: str = "tcp"
    state: str = "NEW"
    mark: int = 0


def parse(restore_text: str) -> dict[str, list[list[str]]]:
    chains: dict[str, list[list[str]]] = {}
    for line in restore_text.splitlines():
        if line.startswith(":"):
            chains[line[1:].split()[0]] = []
        elif line.startswith("-A "):
            args = shlex.split(line)
            chains[args[1]].append(args[2:])
        elif line.startswith("-X "):
            chains.pop(line.split()[1], None)
    return chains


def _matches(args: list[str], pkt: Packet) -> tuple[bool, list[str]]:
    i, neg = 0, False
    while i < len(args):
        a = args[i]
        if a == "-j":
            return True, args[i + 1 :]
        if a == "!":
            neg = True
            i += 1
            continue
        val = args[i + 1]
        if a == "-m" or a == "--comment":
            ok = True
        elif a in ("-s", "-d"):
            ok = ipaddress.ip_address(pkt.src if a == "-s" else pkt.dst) in ipaddress.ip_network(val)
        elif a == "-p":
            ok = pkt.proto == val
        elif a == "--dport":
            lo, _, hi = val.partition(":")
            ok = int(lo) <= pkt.dport <= int(hi or lo)
        elif a == "--ctstate":
            ok = pkt.state in val.split(",")
        elif a == "--mark":
            v, _, m = val.partition("/")
            ok = (pkt.mark & int(m, 16)) == int(v, 16)
        else:
            raise AssertionError(f"verdict helper does not know {a!r} in {args}")
        if neg:
            ok, neg = not ok, False
        if not ok:
            return False, []
        i += 2
    return True, []


def _walk(chains: dict[str, list[list[str]]], chain: str, pkt: Packet, trace: list[str]) -> str | None:
    for rule in chains[chain]:
        ok, target = _matches(rule, pkt)
        if not ok or not target:
            continue
        trace.append(f"{chain}: {' '.join(rule)}")
        t = target[0]
        if t in ("ACCEPT", "DROP"):
            return t
        if t == "RETURN":
            return None
        if t == "MARK":
            assert target[1] == "--set-xmark"
            v, _, m = target[2].partition("/")
            pkt.mark = (pkt.mark & ~int(m, 16)) ^ int(v, 16)
            continue
        result = _walk(chains, t, pkt, trace)
        if result is not None:
            return result
    return None


def verdict(restore_text: str, pkt: Packet, trace: list[str] | None = None, hook: str = "FORWARD") -> str:
    """The verdict, ACCEPT or DROP, for ``pkt`` crossing this node's ``hook`` chain (FORWARD:
    routed or bridged through the node; INPUT: addressed to it), which jumps as ``plan.JUMPS`` say."""
    from netplugin.policy import plan

    chains = parse(restore_text)
    chains[hook] = [rule for chain, rule in plan.JUMPS if chain == hook]
    return _walk(chains, hook, pkt, trace if trace is not None else []) or "ACCEPT"
