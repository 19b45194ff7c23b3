"""The seam between the proxier and the kernel: the ``Backend`` protocol and the change planner.

Role: a backend makes the kernel's chains match a ``Ruleset``. Every backend shares one pure
planner, ``make_plan``, which decides *what* to write; backends only decide *how* (an
``iptables-restore`` text, or libiptc calls through python-iptables).

What a plan contains, per table:
- ``write``: chains declared (created or flushed) and filled, in rendered order;
- ``patch``: order-free chains (``rules.ORDER_FREE_CHAINS``) changed rule by rule: the rules
  that went away are deleted by their spec, new ones are inserted at the top. At 10k services
  this keeps a one-service change from rewriting the 10k-rule ``KUBE-SERVICES`` chain;
- ``delete``: stale chains of ours, flushed then deleted (after every reference is gone);
- ``jumps``: hooks from built-in chains that are missing (full syncs only).

Full sync: every desired chain is written, every owned chain the kernel has but we do not want is
deleted, missing hooks are added. Partial sync: only chains whose content differs from what we
last applied are touched (KEP-3453). ``Plan.result`` is what our chains hold afterwards (with the
order patches produce), which becomes the base of the next partial plan.

Full syncs can be *streamed* (``StreamedRuleset``, ``Backend.apply_full``): the proxier hands over
the per-service nat chains while it is still rendering them, so a backend can start its tool and
feed it the first service's chains before the last one is rendered; the planner still decides
everything (``make_plan`` on the finished ruleset), the stream only changes *when* each chain's
lines are written, never which lines or in which order within a chain.

Invariants: only chains for which ``rules.owned_chain`` is true are ever written or deleted, and
in built-in chains only our hook rules are added or removed.

Concurrency: backends are used from one thread at a time (the sync runner's).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from proxy.rules import ORDER_FREE_CHAINS, TABLES, Jump, Ruleset, owned_chain

State = dict[str, dict[str, list[str]]]  # table -> our chain -> rules (as written)

BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
}


class BackendError(Exception):
    """Applying rules failed; nothing of the failed batch is assumed to be in the kernel.

    ``context`` holds the offending input lines (with their line numbers) when the tool said
    which line failed.
    """

    def __init__(self, message: str, *, context: str = "", text: str = "") -> None:
        super().__init__(message + (f"\noffending input:\n{context}" if context else ""))
        self.context = context
        self.text = text


@dataclass
class ObservedTable:
    """What a table holds now: every chain name, built-in policies, and rules we looked at."""

    chains: set[str] = field(default_factory=set)
    policies: dict[str, str] = field(default_factory=dict)
    rules: dict[str, list[str]] = field(default_factory=dict)  # chain -> "-A ..." args (no "-A C")


Observed = dict[str, ObservedTable]


@dataclass
class TablePlan:
    table: str
    write: dict[str, list[str]] = field(default_factory=dict)
    patch: dict[str, tuple[list[str], list[str]]] = field(default_factory=dict)  # (deletes, inserts)
    delete: list[str] = field(default_factory=list)
    jumps: list[Jump] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.write or self.patch or self.delete or self.jumps)

    def restore_lines(self) -> list[str]:
        """This table's part of an ``iptables-restore --noflush`` input."""
        if self.empty:
            return []
        return [f"*{self.table}", *self.restore_tail()]

    def restore_tail(self, declared: Container[str] = (), written: Container[str] = ()) -> list[str]:
        """The ``--noflush`` lines after ``*table`` and after a streamed head that already
        declared the chains in ``declared`` and wrote the rules of those in ``written``."""
        out = [f":{c} - [0:0]" for c in self.write if c not in declared]
        out += [f":{c} - [0:0]" for c in self.delete]
        for c, rules in self.write.items():
            if c not in written:
                prefix = f"-A {c} "
                out += [prefix + r for r in rules]
        for c, (deletes, inserts) in self.patch.items():
            out += [f"-D {c} {r}" for r in deletes]
            # Inserting each at position 1 reverses them: insert from the last to keep their order.
            out += [f"-I {c} 1 {r}" for r in reversed(inserts)]
        out += [f"-I {j.chain} 1 {j.rule}" for j in self.jumps]
        out += [f"-X {c}" for c in self.delete]
        out.append("COMMIT")
        return out


@dataclass
class Plan:
    full: bool
    tables: dict[str, TablePlan]
    result: State

    @property
    def empty(self) -> bool:
        return all(t.empty for t in self.tables.values())

    def chains_written(self) -> int:
        return sum(len(t.write) + len(t.patch) for t in self.tables.values())

    def restore_text(self, tables: tuple[str, ...] = TABLES) -> str:
        lines: list[str] = []
        for name in tables:
            if name in self.tables:
                lines += self.tables[name].restore_lines()
        return "\n".join(lines) + "\n" if lines else ""


class StreamedRuleset:
    """A full sync's ruleset while it is being rendered.

    ``groups`` yields the nat chains of one service port at a time (a mapping chain -> rules,
    in render order; a group's rules refer only to its own chains and the fixed ones), as the
    proxier renders them. ``finish()`` runs the rest of the rendering (draining ``groups`` if
    the consumer stopped early) and returns the complete ``Ruleset``, whose nat table holds
    every streamed chain as well. ``finish`` may be called more than once.
    """

    def __init__(self, groups: Iterator[Mapping[str, list[str]]], build: Callable[[], Ruleset]) -> None:
        self.groups = groups
        self._build = build
        self._ruleset: Ruleset | None = None

    def finish(self) -> Ruleset:
        if self._ruleset is None:
            for _ in self.groups:
                pass
            self._ruleset = self._build()
        return self._ruleset

    @classmethod
    def of(cls, ruleset: Ruleset) -> StreamedRuleset:
        """A stream of an already rendered ruleset: its per-service chains grouped by owner."""
        nat = ruleset.tables.get("nat", {})

        def groups() -> Iterator[Mapping[str, list[str]]]:
            group: dict[str, list[str]] = {}
            owner = None
            for chain, spn in ruleset.owners.items():
                if spn != owner and group:
                    yield group
                    group = {}
                owner = spn
                group[chain] = nat[chain]
            if group:
                yield group

        return cls(groups(), lambda: ruleset)


def has_jump(observed_rules: list[str], jump: Jump) -> bool:
    return any(r.endswith(f"-j {jump.target}") for r in observed_rules)


def _take(items: list[str], counts: Counter[str]) -> list[str]:
    """The items (in order) whose remaining count is positive, consuming one count each."""
    out = []
    for r in items:
        if counts[r] > 0:
            counts[r] -= 1
            out.append(r)
    return out


def _diff(old: list[str], new: list[str]) -> tuple[list[str], list[str]]:
    """Rules to delete (by spec) and to insert to turn ``old`` into ``new`` as a multiset."""
    gone = Counter(old)
    gone.subtract(new)
    added = Counter(new)
    added.subtract(old)
    return _take(old, gone), _take(new, added)


def _without(old: list[str], deletes: list[str]) -> list[str]:
    """``old`` minus one occurrence of each deleted rule (what ``-D`` by spec leaves)."""
    gone = Counter(deletes)
    out = []
    for r in old:
        if gone[r] > 0:
            gone[r] -= 1
        else:
            out.append(r)
    return out


def make_plan(
    desired: Ruleset,
    applied: State | None,
    observed: Observed | None,
    *,
    full: bool,
    touched: set[tuple[str, str]] | None = None,
) -> Plan:
    """What to write so that our chains hold ``desired`` (see the module docstring).

    ``touched`` (partial syncs only) names the only (table, chain) pairs that may differ from
    ``applied``: the chains of the service ports that changed and the shared chains if they were
    rebuilt. The planner then looks at those alone, so a one-service sync at 10k services does
    not compare 60k chains. ``None`` means "compare everything".
    """
    if not full and applied is None:
        full = True
    tables: dict[str, TablePlan] = {}
    result: State = {}
    for table in TABLES:
        want = desired.tables.get(table, {})
        tp = TablePlan(table)
        tables[table] = tp
        if full:
            tp.write = dict(want)
            obs = (observed or {}).get(table) or ObservedTable()
            known = set(obs.chains) | set((applied or {}).get(table, {}))
            tp.delete = sorted(c for c in known if owned_chain(table, c) and c not in want)
            for j in desired.jumps:
                if j.table == table and not has_jump(obs.rules.get(j.chain, []), j):
                    tp.jumps.append(j)
            result[table] = dict(want)
            continue
        assert applied is not None
        have = applied.get(table, {})
        now = dict(have)
        if touched is None:
            candidates = [*want, *(c for c in have if c not in want)]
        else:
            candidates = sorted(c for t, c in touched if t == table)
        for chain in candidates:
            rules = want.get(chain)
            old = have.get(chain)
            if rules is None:
                if old is not None:
                    tp.delete.append(chain)
                    del now[chain]
            elif old is None:
                tp.write[chain] = rules
                now[chain] = rules
            elif old is rules or old == rules:  # identity: an untouched fragment's chain
                continue
            elif (table, chain) in ORDER_FREE_CHAINS:
                deletes, inserts = _diff(old, rules)
                if len(deletes) + len(inserts) < max(8, len(rules) // 2):
                    tp.patch[chain] = (deletes, inserts)
                    now[chain] = list(inserts) + _without(old, deletes)
                else:
                    tp.write[chain] = rules
                    now[chain] = rules
            else:
                tp.write[chain] = rules
                now[chain] = rules
        tp.delete.sort()
        result[table] = now
    return Plan(full=full, tables=tables, result=result)


_LINE_RE = re.compile(r"line:? (\d+)")


def offending_lines(text: str, stderr: str, around: int = 2) -> str:
    """The input lines an ``iptables-restore`` error points at, numbered, the culprit marked."""
    m = _LINE_RE.search(stderr)
    if not m:
        return ""
    n = int(m.group(1))
    lines = text.splitlines()
    out = []
    for i in range(max(1, n - around), min(len(lines), n + around) + 1):
        out.append(f"{'>>' if i == n else '  '} {i:6d}  {lines[i - 1]}")
    return "\n".join(out)


class Backend(Protocol):
    """Makes the kernel's chains of ours match a Ruleset. Used from one thread."""

    name: str

    def apply(self, desired: Ruleset, *, full: bool, touched: set[tuple[str, str]] | None = None) -> Plan:
        """Write ``desired``; raise ``BackendError`` (and keep the previous rules) on failure.

        ``touched``: on a partial sync, the only chains that may have changed (see make_plan).
        """
        ...

    def apply_full(self, stream: StreamedRuleset) -> Plan:
        """A full sync of a ruleset still being rendered (see ``StreamedRuleset``); the same
        result and errors as ``apply(stream.finish(), full=True)``. A backend that cannot use
        the head start simply finishes the stream first."""
        ...

    def canary_present(self) -> bool:
        """False when our canary chain is gone: someone flushed the tables; resync fully."""
        ...

    def cleanup(self) -> None:
        """Remove every chain we own and our hooks in the built-in chains; nothing else."""
        ...


def state_of(ruleset: Ruleset) -> State:
    return {t: {c: list(r) for c, r in chains.items()} for t, chains in ruleset.tables.items()}


def parse_save(text: str) -> Observed:
    """Parse ``iptables-save`` output: chains, built-in policies and every rule's args."""
    observed: Observed = {}
    table: ObservedTable | None = None
    for line in text.splitlines():
        if line.startswith("*"):
            table = observed.setdefault(line[1:].strip(), ObservedTable())
        elif table is None or not line or line.startswith("#") or line == "COMMIT":
            continue
        elif line.startswith(":"):
            parts = line[1:].split()
            table.chains.add(parts[0])
            if len(parts) > 1 and parts[1] != "-":
                table.policies[parts[0]] = parts[1]
        elif line.startswith("-A "):
            _, chain, *rest = line.split(" ", 2)
            table.rules.setdefault(chain, []).append(rest[0] if rest else "")
    return observed


def owned_in(observed: Mapping[str, ObservedTable]) -> dict[str, list[str]]:
    return {t: sorted(c for c in o.chains if owned_chain(t, c)) for t, o in observed.items()}
