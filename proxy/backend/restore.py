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

Full syncs are streamed (``apply_full``): the restore starts before rendering ends and is fed the
nat table first, one service port's chains at a time as the proxier renders them, so the tool
parses on the other core while Python renders (the rendering then costs little beyond the plain
restore of the same text). What needs the kernel's current state (stale chains to delete, hooks
that are missing, the foreign content a fresh nf_tables restore re-declares) is read by a
background thread meanwhile and written at the end of the table, before its ``COMMIT``; filter
and mangle, which depend on every service port, follow. Lines go out in big chunks, not one
write per rule. A failure before ``COMMIT`` (a rendering error: the tool is killed; or the tool
rejecting a line) applies nothing of that table, and the error quotes the offending lines of
the text sent so far. On nf_tables the head is held back until the nat table proves to be over
``fresh_threshold`` chains; below it, everything goes through one ``--noflush`` restore as before.
The price on legacy: ``iptables-legacy-restore -w`` takes the xtables lock (``/run/xtables.lock``,
one file for every namespace) when it starts, so a streamed restore holds it while the rest of
the rules render too (measured: 1,000 services ≈ 40 ms, 10,000 ≈ 0.5 s of Python on top of the
restore's own time); other ``iptables -w`` callers wait that much longer, callers without ``-w``
fail as they would during any restore. nf_tables takes no such lock.

Concurrency: one thread at a time (the sync runner's); ``apply_full`` runs its observation on a
short-lived helper thread that touches nothing but its own result.
"""

from __future__ import annotations

import logging
import re
import shlex
import threading
from collections.abc import Callable, Container, Mapping
from typing import Generic, TypeVar

from proxy.backend.exec import CommandError, CommandRunner, Feed, ToolMissing
from proxy.backend.interface import (
    BUILTIN_CHAINS,
    BackendError,
    Observed,
    ObservedTable,
    Plan,
    State,
    StreamedRuleset,
    TablePlan,
    has_jump,
    make_plan,
    offending_lines,
    parse_save,
)
from proxy.rules import CANARY, FIXED_CHAINS, TABLES, Ruleset, owned_chain

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
        self._last_text = ""
        self._last_writer: _Writer | None = None

    # --- tools -----------------------------------------------------------------------------
    def _tool(self, base: str) -> str:
        return f"{base}-{self.mode}" if base == "iptables" else f"iptables-{self.mode}-{base.split('-', 1)[1]}"

    @property
    def last_text(self) -> str:
        """The input of the last restore (the streamed one included), for debugging."""
        if self._last_writer is not None:
            return self._last_writer.text()
        return self._last_text

    def _restore(self, text: str, *, noflush: bool = True) -> None:
        argv = [self._tool("iptables-restore"), "-w"] + (["--noflush"] if noflush else [])
        self._last_text, self._last_writer = text, None
        try:
            self.runner.run(argv, input=text)
        except ToolMissing as exc:
            raise BackendError(str(exc), text=text) from exc
        except CommandError as exc:
            context = offending_lines(text, exc.stderr)
            raise BackendError(f"{argv[0]} failed: {exc.stderr.strip()}", context=context, text=text) from exc

    # --- observing -------------------------------------------------------------------------
    def observe(self, tables: tuple[str, ...] = TABLES) -> Observed:
        """Chains and built-in rules now in the kernel (all rules of every chain, via save).

        One ``iptables-save`` for all tables (it prints the tables that exist; one that does not
        is empty): a process per table cost more than the rest of a small sync's planning.
        """
        res = self.runner.run([self._tool("iptables-save")], check=False)
        found = parse_save(res.stdout) if res.returncode == 0 else {}
        return {table: found.get(table) or ObservedTable() for table in tables}

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
        """Make the kernel match ``desired``; any failure (a tool missing or failing) is a
        ``BackendError`` and leaves the previous rules in place."""
        try:
            return self._apply(desired, full=full, touched=touched)
        except ToolMissing as exc:
            raise BackendError(str(exc)) from exc
        except CommandError as exc:
            raise BackendError(f"{exc.argv[0]} failed: {exc.stderr.strip() or exc}") from exc

    def _apply(self, desired: Ruleset, *, full: bool, touched: set[tuple[str, str]] | None = None) -> Plan:
        full = full or self.applied is None
        observed: Observed | None = None
        if full:
            observed = self._observe_full()
        plan = make_plan(desired, None if full else self.applied, observed, full=full, touched=touched)
        self.applied = None  # unknown until this batch is in
        self._apply_plan(plan, observed)
        self.applied = plan.result
        return plan

    def _observe_full(self) -> Observed:
        return self._observe_cheap(TABLES) if self.mode == "nft" else self.observe()

    def _fresh_tables(self, plan: Plan) -> tuple[str, ...]:
        if not plan.full or self.mode != "nft":
            return ()
        return tuple(t for t in TABLES if len(plan.tables[t].write) > self.fresh_threshold)

    def _apply_plan(self, plan: Plan, observed: Observed | None, tables: tuple[str, ...] = TABLES) -> None:
        fresh_tables = tuple(t for t in self._fresh_tables(plan) if t in tables)
        text = plan.restore_text(tuple(t for t in tables if t not in fresh_tables))
        if text:
            self._restore(text)
        for table in fresh_tables:
            assert observed is not None
            self._restore(fresh_table_text(plan.tables[table], observed[table]), noflush=False)

    def apply_full(self, stream: StreamedRuleset) -> Plan:
        """A full sync streamed into the restore while it is rendered (module docstring)."""
        try:
            return self._apply_full(stream)
        except ToolMissing as exc:
            raise BackendError(str(exc)) from exc
        except CommandError as exc:
            raise BackendError(f"{exc.argv[0]} failed: {exc.stderr.strip() or exc}") from exc

    def _apply_full(self, stream: StreamedRuleset) -> Plan:
        self.applied = None  # unknown until this batch is in
        observing = _Background(self._observe_full)
        head = ["*nat", *(f":{c} - [0:0]" for c in FIXED_CHAINS["nat"])]
        declared = set(FIXED_CHAINS["nat"])
        streamed: set[str] = set()
        held: list[str] = []  # nf_tables: text held back until the table proves big
        writer: _Writer | None = None
        try:
            if self.mode == "legacy":
                writer = self._start(noflush=True)
                writer.lines(head)
            for group in stream.groups:
                text = _group_text(group)
                streamed.update(group)
                if writer is not None:
                    writer.text_lines(text)
                    continue
                held.append(text)
                if len(declared) + len(streamed) > self.fresh_threshold:
                    writer = self._start(noflush=False)
                    writer.lines(head)
                    writer.text_lines("".join(held))
                    held = []
            desired = stream.finish()
            observed = observing.result()
            plan = make_plan(desired, None, observed, full=True)
            if writer is None:  # nf_tables, small: one --noflush restore of the plan as before
                self._apply_plan(plan, observed)
                self.applied = plan.result
                return plan
            nat = plan.tables["nat"]
            declared |= streamed
            if not declared <= nat.write.keys():  # the proxier guarantees it; never commit otherwise
                raise BackendError(f"streamed chains missing from the ruleset: {sorted(declared - nat.write.keys())}")
            if self.mode == "legacy":
                writer.lines(nat.restore_tail(declared, streamed))
                for table in ("filter", "mangle"):
                    writer.lines(plan.tables[table].restore_lines())
                writer.close()
            else:
                writer.lines(fresh_table_tail(nat, observed["nat"], declared, streamed))
                writer.close()
                self._apply_plan(plan, observed, ("filter", "mangle"))
        finally:
            if writer is not None:
                writer.abandon()  # a no-op once closed; otherwise nothing gets committed
            stream.finish()  # the proxier's model is complete even when applying failed
            observing.result(check=False)
        self.applied = plan.result
        return plan

    def _start(self, *, noflush: bool) -> _Writer:
        argv = [self._tool("iptables-restore"), "-w"] + (["--noflush"] if noflush else [])
        writer = _Writer(argv, self.runner.start(argv))
        self._last_writer = writer
        return writer

    def canary_present(self) -> bool:
        try:
            res = self.runner.run([self._tool("iptables"), "-w", "-t", "mangle", "-S", CANARY], check=False)
        except CommandError:  # the tool is missing or hung: we cannot see it, so resync in full
            return False
        return res.returncode == 0

    def cleanup(self) -> None:
        observed = self.observe()
        text = cleanup_text(observed)
        if text:
            self._restore(text)
        self.applied = None


def fresh_table_text(tp: TablePlan, obs: ObservedTable) -> str:
    """A whole-table restore (no ``--noflush``): foreign content as found, ours as planned."""
    return "\n".join([f"*{tp.table}", *fresh_table_tail(tp, obs)]) + "\n"


def fresh_table_tail(
    tp: TablePlan, obs: ObservedTable, declared: Container[str] = (), written: Container[str] = ()
) -> list[str]:
    """The lines of a whole-table restore after ``*table`` and after a streamed head that
    already declared the chains in ``declared`` and wrote the rules of those in ``written``."""
    table = tp.table
    out: list[str] = []
    builtins = BUILTIN_CHAINS.get(table, ())
    for chain in builtins:
        out.append(f":{chain} {obs.policies.get(chain, 'ACCEPT')} [0:0]")
    foreign = sorted(c for c in obs.chains if c not in builtins and not owned_chain(table, c))
    out += [f":{c} - [0:0]" for c in foreign]
    out += [f":{c} - [0:0]" for c in tp.write if c not in declared]
    for chain in builtins:
        rules = list(obs.rules.get(chain, []))
        missing = [j.rule for j in tp.jumps if j.chain == chain and not has_jump(rules, j)]
        # kube-proxy prepends each hook in list order, so the last one ends up first.
        out += [f"-A {chain} {r}" for r in [*reversed(missing), *rules]]
    for chain in foreign:
        out += [f"-A {chain} {r}" for r in obs.rules.get(chain, [])]
    for chain, rules in tp.write.items():
        if chain not in written:
            prefix = f"-A {chain} "
            out += [prefix + r for r in rules]
    out.append("COMMIT")
    return out


def _group_text(group: Mapping[str, list[str]]) -> str:
    """One service port's chains as restore lines (each ending in a newline): every
    declaration first (its rules jump between them), then each chain's rules."""
    out = [f":{c} - [0:0]\n" for c in group]
    for chain, rules in group.items():
        if rules:
            sep = f"\n-A {chain} "
            out.append(sep[1:] + sep.join(rules) + "\n")
    return "".join(out)


class _Writer:
    """Feeds a restore in chunks of about ``CHUNK`` characters and remembers every line sent
    (a failure quotes them). After the tool stopped reading, further lines are only kept."""

    CHUNK = 1 << 16

    def __init__(self, argv: list[str], feed: Feed) -> None:
        self.argv = argv
        self.feed = feed
        self.sent: list[str] = []
        self.pending: list[str] = []
        self.size = 0
        self.broken = False
        self.done = False

    def lines(self, lines: list[str]) -> None:
        if lines:
            self.text_lines("\n".join(lines) + "\n")

    def text_lines(self, chunk: str) -> None:
        """Whole lines, each ending in a newline."""
        self.pending.append(chunk)
        self.size += len(chunk)
        if self.size >= self.CHUNK:
            self.flush()

    def flush(self) -> None:
        data = "".join(self.pending)
        self.pending, self.size = [], 0
        self.sent.append(data)
        if not self.broken and data:
            try:
                self.feed.write(data)
            except BrokenPipeError:
                self.broken = True  # it failed on a line already sent; close() says which

    def text(self) -> str:
        return "".join(self.sent) + "".join(self.pending)

    def close(self) -> None:
        self.flush()
        self.done = True
        try:
            self.feed.close()
        except CommandError as exc:
            text = self.text()
            raise BackendError(
                f"{self.argv[0]} failed: {exc.stderr.strip()}",
                context=offending_lines(text, exc.stderr),
                text=text,
            ) from exc

    def abandon(self) -> None:
        if not self.done:
            self.done = True
            self.feed.kill()


_T = TypeVar("_T")


class _Background(Generic[_T]):
    """Runs ``fn`` on a helper thread (a process to wait for) while the caller renders."""

    def __init__(self, fn: Callable[[], _T]) -> None:
        self._fn = fn
        self._value: _T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="proxy-observe", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._fn()
        except BaseException as exc:  # handed to the caller by result()
            self._error = exc

    def result(self, *, check: bool = True) -> _T:
        self._thread.join()
        if self._error is not None and check:
            raise self._error
        return self._value  # type: ignore[return-value]


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
