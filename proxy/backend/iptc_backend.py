"""The python-iptables backend (libiptc): for hosts whose ``iptables`` is the legacy one.

Role: apply a ``Plan`` through libiptc's in-memory table handle: per table, ``autocommit`` off,
every chain/rule operation of the plan on the handle, then **one** ``commit`` (libiptc replaces
the whole table in the kernel at commit, so a commit per rule would rewrite the table once per
rule). A failure before the commit discards the handle, so the kernel keeps the previous rules.

Limits, said plainly: libiptc speaks only the legacy x_tables interface (python-iptables does not
work with nf_tables: ldx/python-iptables #306, #342), so rules written here show in
``iptables-legacy -t nat -S`` and ``iptables -t nat -S`` only where ``iptables`` is legacy. It
works on the calling process's network namespace: run the proxy inside the node's netns.
Building rule objects in Python costs far more than iptables-restore's C parser: python-iptables
re-reads every parameter it sets through the extension's save function (measured: a full sync of
200 services × 5 endpoints took ~40× a plain restore). A partial sync writes a few rules, and
there libiptc wins: no process to start, one commit. So by default (``full_via_restore``) this
backend sends *full* syncs through ``iptables-legacy-restore --noflush`` (the same legacy tables)
and does partial syncs itself (a full sync is streamed into that restore as it renders: see
``restore.py``); ``full_via_restore=False`` does everything through libiptc. The benchmark
reports both.

Rules arrive as iptables argument strings (the ``Ruleset``'s); ``build_rule`` turns one into an
``iptc.Rule``, understanding exactly the options ``rules.py`` emits (and ``!`` negation).

Concurrency: one thread at a time (the sync runner's); libiptc handles are not thread-safe.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from proxy.backend.interface import (
    BUILTIN_CHAINS,
    BackendError,
    Observed,
    ObservedTable,
    Plan,
    State,
    StreamedRuleset,
    make_plan,
)
from proxy.rules import CANARY, TABLES, Ruleset, owned_chain

log = logging.getLogger(__name__)


def _iptc() -> Any:
    import iptc  # imported lazily: loading libiptc needs the legacy xtables libraries

    return iptc


_TOKEN = re.compile(r'"([^"]*)"|(\S+)')


def split_words(spec: str) -> list[str]:
    """Split a rule spec like the shell would for the quoting ``rules.py`` uses ("..." only).

    A regex instead of ``shlex``: shlex dominated the cost of building 200k rules.
    """
    return [quoted if bare == "" else bare for quoted, bare in _TOKEN.findall(spec)]


def build_rule(spec: str) -> Any:
    """An ``iptc.Rule`` from an iptables rule spec such as ``-m tcp -p tcp --dport 80 -j X``."""
    iptc = _iptc()
    words = split_words(spec)
    rule = iptc.Rule()
    current: Any = None
    neg = ""
    i = 0
    while i < len(words):
        w = words[i]
        if w == "!":
            neg = "!"
            i += 1
            continue
        if w in ("-p", "-s", "-d", "-i", "-o"):
            value = neg + words[i + 1]
            if w == "-p":
                rule.protocol = value
            elif w == "-s":
                rule.src = value
            elif w == "-d":
                rule.dst = value
            elif w == "-i":
                rule.in_interface = value
            else:
                rule.out_interface = value
            i += 2
        elif w == "-m":
            current = rule.create_match(words[i + 1])
            i += 2
        elif w in ("-j", "-g"):
            current = rule.create_target(words[i + 1], goto=(w == "-g"))
            i += 2
        elif w.startswith("--"):
            j = i + 1
            values = []
            while j < len(words) and not words[j].startswith("-") and words[j] != "!":
                values.append(words[j])
                j += 1
            if current is None:
                raise ValueError(f"option {w} outside a match or target in {spec!r}")
            current.set_parameter(w[2:], neg + " ".join(values))
            i = j
        else:
            raise ValueError(f"cannot parse {w!r} in rule {spec!r}")
        neg = ""
    if current is None or rule.target is None:
        rule.create_target("")  # a rule without -j (a comment-only rule) still needs a target entry
    return rule


class IptcBackend:
    def __init__(self, *, full_via_restore: bool = True) -> None:
        self.applied: State | None = None
        self.full_via_restore = full_via_restore
        self.name = "python-iptables" + (" (full syncs via iptables-legacy-restore)" if full_via_restore else "")
        self._restore: Any = None

    def _table(self, name: str) -> Any:
        iptc = _iptc()
        table = iptc.Table(name)
        table.autocommit = False
        table.refresh()  # drop any cached view: read the kernel's table now
        return table

    def observe(self) -> Observed:
        iptc = _iptc()
        observed: Observed = {}
        for name in TABLES:
            t = self._table(name)
            obs = ObservedTable(chains={c.name for c in t.chains})
            for chain in BUILTIN_CHAINS[name]:
                if t.is_chain(chain):
                    rules = iptc.Chain(t, chain).rules
                    obs.rules[chain] = [f"-j {r.target.name}" for r in rules if r.target is not None]
            observed[name] = obs
        return observed

    def apply(self, desired: Ruleset, *, full: bool, touched: set[tuple[str, str]] | None = None) -> Plan:
        iptc = _iptc()
        full = full or self.applied is None
        if full and self.full_via_restore:
            from proxy.backend.restore import RestoreBackend

            self._restore = self._restore or RestoreBackend("legacy")
            self.applied = None
            plan: Plan = self._restore.apply(desired, full=True)
            self.applied = plan.result
            return plan
        observed = self.observe() if full else None
        plan = make_plan(desired, None if full else self.applied, observed, full=full, touched=touched)
        self.applied = None
        for name in TABLES:
            tp = plan.tables[name]
            if tp.empty:
                continue
            t = self._table(name)
            step = ""
            try:
                for c in [*tp.write, *tp.delete]:
                    step = f":{c}"
                    if t.is_chain(c):
                        t.flush_entries(c)
                    else:
                        t.create_chain(c)
                for c, rules in tp.write.items():
                    chain = iptc.Chain(t, c)
                    for r in rules:
                        step = f"-A {c} {r}"
                        chain.append_rule(build_rule(r))
                for c, (deletes, inserts) in tp.patch.items():
                    chain = iptc.Chain(t, c)
                    for r in deletes:
                        step = f"-D {c} {r}"
                        chain.delete_rule(build_rule(r))
                    for r in reversed(inserts):
                        step = f"-I {c} 1 {r}"
                        chain.insert_rule(build_rule(r), 0)
                for j in tp.jumps:
                    step = f"-I {j.chain} 1 {j.rule}"
                    iptc.Chain(t, j.chain).insert_rule(build_rule(j.rule), 0)
                for c in tp.delete:
                    step = f"-X {c}"
                    t.delete_chain(c)
                step = "COMMIT"
                t.commit()
            except (iptc.IPTCError, iptc.XTablesError, ValueError, AttributeError) as exc:
                t.refresh()  # throw the uncommitted handle away: the kernel keeps the old table
                raise BackendError(f"python-iptables: table {name}: {exc}", context=f">> {step}") from exc
        self.applied = plan.result
        return plan

    def apply_full(self, stream: StreamedRuleset) -> Plan:
        """Streamed through ``iptables-legacy-restore`` (``full_via_restore``); libiptc itself
        gains nothing from a head start (its commit is at the end), so it renders first."""
        if not self.full_via_restore:
            return self.apply(stream.finish(), full=True)
        from proxy.backend.restore import RestoreBackend

        self._restore = self._restore or RestoreBackend("legacy")
        self.applied = None
        plan: Plan = self._restore.apply_full(stream)
        self.applied = plan.result
        return plan

    def canary_present(self) -> bool:
        return bool(self._table("mangle").is_chain(CANARY))

    def cleanup(self) -> None:
        iptc = _iptc()
        for name in TABLES:
            t = self._table(name)
            owned = [c.name for c in t.chains if owned_chain(name, c.name)]
            if not owned:
                continue
            for chain in BUILTIN_CHAINS[name]:
                if not t.is_chain(chain):
                    continue
                ch = iptc.Chain(t, chain)
                for r in ch.rules:
                    if r.target is not None and r.target.name in owned:
                        ch.delete_rule(r)
            for c in owned:
                t.flush_entries(c)
            for c in owned:
                t.delete_chain(c)
            t.commit()
        self.applied = None
