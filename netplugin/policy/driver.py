"""The iptables side of NetworkPolicy enforcement: a small driver interface, the real one, a fake.

Verbs (the domain's, not iptables' flags):
- ``owned_chains()``: our chains (``plan.is_owned_chain``) that exist in the filter table now;
- ``restore(text)``: one ``iptables-restore --noflush`` of ``plan.Ruleset.restore_text``; atomic
  per table, and it touches only the chains the text declares (ours), so kube-proxy's chains
  and everyone else's rules are left alone;
- ``ensure_jumps()`` / ``remove_jumps()``: the ``-j KUBELAB-FIREWALL`` rules at the top of FORWARD and INPUT
  (``-C`` then ``-I … 1``, as kube-proxy's ``EnsureRule``; removal repeats ``-D`` while ``-C`` finds
  one, so a duplicate left by a crash goes too);
- ``cleanup()``: jumps first, then every owned chain flushed and deleted.

``IptablesDriver`` runs the ``iptables`` commands (the host's default variant, nf_tables here, as
kube-proxy's auto mode picks on a namespace without legacy rules; ``variant="legacy"`` for
``iptables-legacy``), in another network namespace through ``nsenter`` when given one.
Concurrency: one caller at a time (the controller's single worker).
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Sequence
from typing import Protocol

from netplugin.policy import plan

log = logging.getLogger("netplugin.policy")


class PolicyDriver(Protocol):
    def owned_chains(self) -> set[str]: ...

    def restore(self, text: str) -> None: ...

    def ensure_jumps(self) -> None: ...

    def remove_jumps(self) -> None: ...


def cleanup(driver: PolicyDriver) -> set[str]:
    """Remove everything kubelab's policy enforcement put in the filter table; returns the chains."""
    driver.remove_jumps()
    owned = driver.owned_chains()
    if owned:
        driver.restore(plan.Ruleset().restore_text(stale=owned))
    return owned


class IptablesDriver:
    def __init__(self, netns: str | None = None, variant: str = "") -> None:
        if variant not in ("", "nft", "legacy"):
            raise ValueError(f"unknown iptables variant {variant!r} (want nft or legacy)")
        self.netns = netns
        self.suffix = f"-{variant}" if variant else ""

    def _run(self, tool: str, args: Sequence[str], input: str | None = None, check: bool = True) -> str:
        argv = [f"{tool}{self.suffix}" if tool == "iptables" else tool.replace("-", f"{self.suffix}-", 1), *args]
        if self.netns:
            argv = ["nsenter", f"--net={self.netns}", *argv]
        res = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=60, check=False)
        if check and res.returncode != 0:
            raise OSError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout if res.returncode == 0 else ""

    def owned_chains(self) -> set[str]:
        out = self._run("iptables-save", ["-t", "filter"])
        return {
            line[1:].split()[0] for line in out.splitlines() if line.startswith(":") and plan.is_owned_chain(line[1:])
        }

    def restore(self, text: str) -> None:
        self._run("iptables-restore", ["-w", "--noflush"], input=text)

    def _has(self, chain: str, rule: list[str]) -> bool:
        argv = ["iptables", "-w", "-t", "filter", "-C", chain, *rule]
        if self.netns:
            argv = ["nsenter", f"--net={self.netns}", *argv]
        argv[argv.index("iptables")] = f"iptables{self.suffix}"
        return subprocess.run(argv, capture_output=True, timeout=60, check=False).returncode == 0

    def ensure_jumps(self) -> None:
        for chain, rule in plan.JUMPS:
            if not self._has(chain, rule):
                self._run("iptables", ["-w", "-t", "filter", "-I", chain, "1", *rule])
                log.info("jump inserted chain=%s rule=%s", chain, " ".join(rule))

    def remove_jumps(self) -> None:
        for chain, rule in plan.JUMPS:
            while self._has(chain, rule):
                self._run("iptables", ["-w", "-t", "filter", "-D", chain, *rule])
                log.info("jump removed chain=%s", chain)


class FakePolicyDriver:
    """The filter table as {chain: [rule text]}, fed by the same restore text (stateful fake)."""

    def __init__(self) -> None:
        self.chains: dict[str, list[str]] = {"FORWARD": [], "INPUT": [], "OUTPUT": []}
        self.restores = 0
        self.fail_restore = False

    def owned_chains(self) -> set[str]:
        return {c for c in self.chains if plan.is_owned_chain(c)}

    def restore(self, text: str) -> None:
        if self.fail_restore:
            raise OSError("injected iptables-restore failure")
        self.restores += 1
        for line in text.splitlines():
            if line.startswith(":"):
                self.chains[line[1:].split()[0]] = []
            elif line.startswith("-A "):
                _, chain, rest = line.split(" ", 2)
                self.chains[chain].append(rest)
            elif line.startswith("-X "):
                name = line.split()[1]
                if any(plan.FIREWALL in r and name == plan.FIREWALL for r in self.chains["FORWARD"]):
                    raise OSError(f"chain {name} is still referenced")
                del self.chains[name]

    def ensure_jumps(self) -> None:
        for chain, rule in plan.JUMPS:
            text = " ".join(rule)
            if text not in self.chains[chain]:
                self.chains[chain].insert(0, text)

    def remove_jumps(self) -> None:
        for chain, rule in plan.JUMPS:
            text = " ".join(rule)
            self.chains[chain] = [r for r in self.chains[chain] if r != text]
