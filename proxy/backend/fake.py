"""A stateful fake of the kernel's iptables tables behind the ``Backend`` protocol.

Role: unit tests run the proxier against this instead of the kernel. It executes the same
``Plan`` a real backend would, on dicts, with the kernel's rules: a chain must exist before a rule
jumps to it, a deleted chain must be empty and unreferenced, ``-D`` of a missing rule fails, and a
failed batch changes nothing (restore is atomic per batch). Tests read ``tables`` (including
built-in chains and foreign chains they planted) or trace packets through them.

Failure injection: ``fail_next`` makes the next ``apply`` calls fail with a ``BackendError``.
``flush()`` simulates someone flushing everything (the canary disappears).
"""

from __future__ import annotations

import copy

from proxy.backend.interface import (
    BUILTIN_CHAINS,
    BackendError,
    ObservedTable,
    Plan,
    State,
    StreamedRuleset,
    make_plan,
)
from proxy.rules import CANARY, TABLES, Ruleset, owned_chain


def _target(rule: str) -> str | None:
    words = rule.split()
    for i, w in enumerate(words[:-1]):
        if w in ("-j", "-g"):
            return words[i + 1]
    return None


_TERMINAL = {"ACCEPT", "DROP", "REJECT", "RETURN", "DNAT", "SNAT", "MASQUERADE", "MARK"}


class FakeBackend:
    name = "fake"

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, list[str]]] = {t: {c: [] for c in BUILTIN_CHAINS[t]} for t in TABLES}
        self.applied: State | None = None
        self.plans: list[Plan] = []
        self.fail_next = 0
        self.applies = 0
        self.streamed_groups = 0

    def observed(self) -> dict[str, ObservedTable]:
        return {
            t: ObservedTable(chains=set(chains), rules={c: list(r) for c, r in chains.items()})
            for t, chains in self.tables.items()
        }

    def apply(self, desired: Ruleset, *, full: bool, touched: set[tuple[str, str]] | None = None) -> Plan:
        full = full or self.applied is None
        plan = make_plan(
            desired, None if full else self.applied, self.observed() if full else None, full=full, touched=touched
        )
        self.applies += 1
        if self.fail_next > 0:
            self.fail_next -= 1
            self.applied = None
            raise BackendError("injected failure", context=">>      1  *nat")
        new = copy.deepcopy(self.tables)
        for name, tp in plan.tables.items():
            t = new[name]
            for c in [*tp.write, *tp.delete]:
                t[c] = []
            for c, rules in tp.write.items():
                t[c] = list(rules)
            for c, (deletes, inserts) in tp.patch.items():
                for r in deletes:
                    if r not in t.get(c, []):
                        raise BackendError(f"-D {c} {r}: no such rule")
                    t[c].remove(r)
                t[c] = list(inserts) + t[c]
            for j in tp.jumps:
                t[j.chain].insert(0, j.rule)
            for c in tp.delete:
                t.pop(c, None)
            self._check(name, t)
        self.tables = new
        self.applied = plan.result
        self.plans.append(plan)
        return plan

    def apply_full(self, stream: StreamedRuleset) -> Plan:
        self.streamed_groups = sum(1 for _ in stream.groups)  # consumed, as a real backend does
        return self.apply(stream.finish(), full=True)

    def _check(self, table: str, chains: dict[str, list[str]]) -> None:
        for c, rules in chains.items():
            for r in rules:
                tgt = _target(r)
                if tgt and tgt not in _TERMINAL and tgt not in chains:
                    raise BackendError(f"{table}: rule in {c} jumps to missing chain {tgt}")

    def canary_present(self) -> bool:
        return CANARY in self.tables["mangle"]

    def flush(self) -> None:
        """Someone ran ``iptables -F; iptables -X`` on every table."""
        self.tables = {t: {c: [] for c in BUILTIN_CHAINS[t]} for t in TABLES}

    def cleanup(self) -> None:
        for name, chains in self.tables.items():
            owned = {c for c in chains if owned_chain(name, c)}
            for c in BUILTIN_CHAINS[name]:
                chains[c] = [r for r in chains[c] if _target(r) not in owned]
            for c in owned:
                del chains[c]
        self.applied = None
