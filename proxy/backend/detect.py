"""Which iptables the host's ``iptables`` command uses, as kube-proxy's iptables-wrapper decides.

Order of evidence (kubernetes-sigs/iptables-wrappers): a ``KUBE-IPTABLES-HINT`` or
``KUBE-KUBELET-CANARY`` chain in one variant's mangle table (kubelet leaves it); otherwise the
variant holding more rules (``iptables-legacy-save`` vs ``iptables-nft-save`` line counts);
otherwise the mode ``iptables -V`` prints. Then: legacy → python-iptables, nf_tables →
``iptables-restore`` (python-iptables cannot write nf_tables), unless ``--backend`` says.

A missing tool is no evidence (it counts as an empty variant) and never stops the daemon: with no
``iptables`` at all it picks nf_tables, and each sync then reports the missing program until it is
installed (the rules appear without a restart).
"""

from __future__ import annotations

import logging

from proxy.backend.exec import CommandRunner, Completed, ToolMissing
from proxy.backend.interface import Backend

log = logging.getLogger(__name__)

BACKENDS = ("auto", "iptables-restore", "python-iptables")
_HINTS = ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY")


def _run(runner: CommandRunner, argv: list[str]) -> Completed:
    try:
        return runner.run(argv, check=False)
    except ToolMissing as exc:
        log.warning("%s", exc)
        return Completed(127, "", str(exc))


def _rule_count(runner: CommandRunner, mode: str) -> int:
    res = _run(runner, [f"iptables-{mode}-save"])
    return sum(1 for line in res.stdout.splitlines() if line.startswith("-"))


def _legacy_tables_exist(runner: CommandRunner) -> bool:
    """Whether this namespace has any legacy x_tables table, without creating one.

    Merely running ``iptables-legacy-save`` instantiates the legacy tables in the namespace, and
    from then on every ``iptables -t nat -S`` there warns "iptables-legacy tables present" — the
    very confusion kubernetes#107965 reports. The kernel lists the existing ones in
    ``/proc/net/ip_tables_names`` (per network namespace), so look there first.
    """
    res = _run(runner, ["cat", "/proc/net/ip_tables_names"])
    return res.returncode != 0 or bool(res.stdout.strip())  # unreadable: assume they may exist


def detect_mode(runner: CommandRunner | None = None) -> tuple[str, str]:
    """(``"nft"`` | ``"legacy"``, why)."""
    runner = runner or CommandRunner()
    modes = ("legacy", "nft") if _legacy_tables_exist(runner) else ("nft",)
    for mode in modes:
        res = _run(runner, [f"iptables-{mode}-save", "-t", "mangle"])
        if any(f":{h} " in res.stdout for h in _HINTS):
            return mode, f"kubelet's hint chain is in the {mode} mangle table"
    legacy = _rule_count(runner, "legacy") if "legacy" in modes else 0
    nft = _rule_count(runner, "nft")
    if legacy > nft:
        return "legacy", f"iptables-legacy-save shows more rules ({legacy} > {nft})"
    if nft > legacy:
        return "nft", f"iptables-nft-save shows more rules ({nft} > {legacy})"
    version = _run(runner, ["iptables", "-V"]).stdout
    if "legacy" in version:
        return "legacy", f"`iptables -V` says {version.strip()!r}"
    return "nft", f"`iptables -V` says {version.strip()!r}"


def make_backend(choice: str = "auto", runner: CommandRunner | None = None) -> tuple[Backend, str]:
    """The backend for ``--backend choice`` on this host, and a sentence saying why."""
    if choice not in BACKENDS:
        raise ValueError(f"unknown backend {choice!r} (want one of {', '.join(BACKENDS)})")
    mode, why = detect_mode(runner)
    if choice == "python-iptables" or (choice == "auto" and mode == "legacy"):
        from proxy.backend.iptc_backend import IptcBackend

        if mode != "legacy":
            why += "; python-iptables was asked for: its rules land in the legacy tables"
        return IptcBackend(), f"python-iptables (libiptc, legacy tables): {why}"
    from proxy.backend.restore import RestoreBackend

    return RestoreBackend(mode, runner), f"iptables-restore ({mode}): {why}"
