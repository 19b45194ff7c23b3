"""The ``iptables-restore`` backend: works with either iptables variant; the one for nf_tables.

Role: turn a ``Plan`` into ``iptables-restore --noflush`` input and run it (one process per sync),
as kube-proxy does. ``mode`` picks the variant's tools (``iptables-nft-restore`` or
``iptables-legacy-restore``), so that ``iptables -t nat -S`` on the node shows our rules.

Measured here (machine-facts.md, and re-measured by tests/bench/bench_proxy.py): on nf_tables a
``--noflush`` restore that re-declares thousands of chains is super-linear (10k services × 5
endpoints: about a minute, against 8 s for a plain restore of the same text), while a small
``--noflush`` change stays in tens of milliseconds. So a *full* sync on nf_tables that writes
more than ``fresh_threshold`` chains into a table restores that table *without* ``--noflush``,
re-declaring the foreign chains and rules it found there a moment before (read per chain with
``iptables -S``, chain names with ``nft list chains ip``, both cheap). The cost: a rule another
program adds to that table between our read and our restore is lost; at lab scale (below the
threshold) the full sync uses ``--noflush`` and touches nothing foreign. Legacy restores always
rewrite the whole table in the kernel anyway, so they always use ``--noflush``.

Concurrency: one thread at a time (the sync runner's).
"""

from __future__ import annotations

import logging
import re
import shlex

from proxy.backend.exec import CommandError, CommandRunner
from proxy.backend.interface import (
    BUILTIN_CHAINS,
    BackendError,
    Observed,
    ObservedTable,
    Plan,
    State,
    TablePlan,
    has_jump,
    make_plan,
    offending_lines,
    parse_save,
)
from proxy.rules import CANARY, TABLES, Ruleset, owned_chain

log = logging.getLogger(__name__)

_NFT_TABLE_RE = re.compile(r"^table ip (\S+) \{")
_NFT_CHAIN_RE = re.compile(r"^\s*chain (\S+) \{")


class RestoreBackend:
    """``iptables-restore --noflush`` batches; ``mode`` is ``"nft"`` or ``"legacy"``."""

    def __init__(
        self,
        mode: str = "nft",
        runner: CommandRunner | None = None,
        *,
        fresh_threshold: int = 1000,
    ) -> None:
        if mode not in ("nft", "legacy"):
            raise ValueError(f"unknown iptables mode {mode!r} (want nft or legacy)")
        self.mode = mode
        self.name = f"iptables-restore ({mode})"
        self.runner = runner or CommandRunner()
        self.fresh_threshold = fresh_threshold
        self.applied: State | None = None
        self.last_text = ""

    # --- tools -----------------------------------------------------------------------------
    def _tool(self, base: str) -> str:
        return f"{base}-{self.mode}" if base == "iptables" else f"iptables-{self.mode}-{base.split('-', 1)[1]}"

    def _restore(self, text: str, *, noflush: bool = True) -> None:
        argv = [self._tool("iptables-restore"), "-w"] + (["--noflush"] if noflush else [])
        self.last_text = text
        try:
            self.runner.run(argv, input=text)
        except CommandError as exc:
            context = offending_lines(text, exc.stderr)
            raise BackendError(f"{argv[0]} failed: {exc.stderr.strip()}", context=context, text=text) from exc

    # --- observing -------------------------------------------------------------------------
    def observe(self, tables: tuple[str, ...] = TABLES) -> Observed:
        """Chains and built-in rules now in the kernel (all rules of every chain, via save)."""
        observed: Observed = {}
        for table in tables:
            res = self.runner.run([self._tool("iptables-save"), "-t", table], check=False)
            observed.update(parse_save(res.stdout) if res.returncode == 0 else {})
            observed.setdefault(table, ObservedTable())
        return observed

    def _observe_cheap(self, tables: tuple[str, ...]) -> Observed:
        """nf_tables only: chain names from ``nft``, rules only of built-in and foreign chains.

        ``iptables-nft-save`` of a 10k-service nat table takes seconds; listing chain names and
        the few chains we do not own takes milliseconds.
        """
        res = self.runner.run(["nft", "list", "chains", "ip"], check=False)
        if res.returncode != 0:
            return self.observe(tables)
        observed: Observed = {t: ObservedTable() for t in tables}
        current: ObservedTable | None = None
        for line in res.stdout.splitlines():
            if m := _NFT_TABLE_RE.match(line):
                current = observed.get(m.group(1))
            elif current is not None and (m := _NFT_CHAIN_RE.match(line)):
                current.chains.add(m.group(1))
        # One shell for every chain we do not own (built-in and foreign chains; few of them):
        # a process per chain would cost more than the rest of a small sync.
        wanted = [(t, c) for t, obs in observed.items() for c in sorted(obs.chains) if not owned_chain(t, c)]
        script = "; ".join(
            f"echo '### {t} {shlex.quote(c)}'; {self._tool('iptables')} -w -t {t} -S {shlex.quote(c)} 2>/dev/null"
            for t, c in wanted
        )
        out = self.runner.run(["sh", "-c", script], check=False).stdout if wanted else ""
        obs, chain = ObservedTable(), ""
        for line in out.splitlines():
            if line.startswith("### "):
                _, table, chain = line.split(" ", 2)
                obs = observed[table]
            elif line.startswith("-P "):
                obs.policies[chain] = line.split()[2]
            elif line.startswith(f"-A {chain} "):
                obs.rules.setdefault(chain, []).append(line[len(chain) + 4 :])
        return observed

    # --- applying --------------------------------------------------------------------------
    def apply(self, desired: Ruleset, *, full: bool, touched: set[tuple[str, str]] | None = None) -> Plan:
        full = full or self.applied is None
        fresh_tables: tuple[str, ...] = ()
        if full and self.mode == "nft":
            fresh_tables = tuple(t for t in TABLES if len(desired.tables.get(t, {})) > self.fresh_threshold)
        observed: Observed | None = None
        if full:
            observed = self._observe_cheap(TABLES) if self.mode == "nft" else self.observe()
        plan = make_plan(desired, None if full else self.applied, observed, full=full, touched=touched)
        self.applied = None  # unknown until this batch is in
        try:
            noflush_tables = tuple(t for t in TABLES if t not in fresh_tables)
            text = plan.restore_text(noflush_tables)
            if text:
                self._restore(text)
            for table in fresh_tables:
                assert observed is not None
                self._restore(fresh_table_text(plan.tables[table], observed[table]), noflush=False)
        except BackendError:
            log.error("iptables-restore failed; previous rules stay in place")
            raise
        self.applied = plan.result
        return plan

    def canary_present(self) -> bool:
        res = self.runner.run([self._tool("iptables"), "-w", "-t", "mangle", "-S", CANARY], check=False)
        return res.returncode == 0

    def cleanup(self) -> None:
        observed = self.observe()
        text = cleanup_text(observed)
        if text:
            self._restore(text)
        self.applied = None


def fresh_table_text(tp: TablePlan, obs: ObservedTable) -> str:
    """A whole-table restore (no ``--noflush``): foreign content as found, ours as planned."""
    table = tp.table
    out = [f"*{table}"]
    builtins = BUILTIN_CHAINS.get(table, ())
    for chain in builtins:
        out.append(f":{chain} {obs.policies.get(chain, 'ACCEPT')} [0:0]")
    foreign = sorted(c for c in obs.chains if c not in builtins and not owned_chain(table, c))
    out += [f":{c} - [0:0]" for c in foreign]
    out += [f":{c} - [0:0]" for c in tp.write]
    for chain in builtins:
        rules = list(obs.rules.get(chain, []))
        missing = [j.rule for j in tp.jumps if j.chain == chain and not has_jump(rules, j)]
        # kube-proxy prepends each hook in list order, so the last one ends up first.
        out += [f"-A {chain} {r}" for r in [*reversed(missing), *rules]]
    for chain in foreign:
        out += [f"-A {chain} {r}" for r in obs.rules.get(chain, [])]
    for chain, rules in tp.write.items():
        out += [f"-A {chain} {r}" for r in rules]
    out.append("COMMIT")
    return "\n".join(out) + "\n"


def cleanup_text(observed: Observed) -> str:
    """``--noflush`` input removing our hooks and every chain we own, nothing else."""
    out: list[str] = []
    for table in TABLES:
        obs = observed.get(table)
        if obs is None:
            continue
        owned = sorted(c for c in obs.chains if owned_chain(table, c))
        hooks = [
            (chain, rule)
            for chain in BUILTIN_CHAINS.get(table, ())
            for rule in obs.rules.get(chain, [])
            if _jump_target(rule) in owned
        ]
        if not owned and not hooks:
            continue
        out.append(f"*{table}")
        out += [f":{c} - [0:0]" for c in owned]  # flush: drops every reference between them
        out += [f"-D {chain} {rule}" for chain, rule in hooks]
        out += [f"-X {c}" for c in owned]
        out.append("COMMIT")
    return "\n".join(out) + "\n" if out else ""


def _jump_target(rule: str) -> str | None:
    try:
        words = shlex.split(rule)
    except ValueError:
        return None
    for i, w in enumerate(words[:-1]):
        if w in ("-j", "-g"):
            return words[i + 1]
    return None
