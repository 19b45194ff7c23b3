"""The ``kubelab`` command: one entry point, one subcommand per component.

Each component owns its subcommand: a module listed in ``COMMANDS`` exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the parsed
namespace and returning an exit code). Only commands that exist are listed, so ``kubelab --help``
never offers something that is not there. Components can also be run as ``python -m <package>``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# (module, description) — the module's ``register(subparsers)`` adds the subcommand(s).
COMMANDS: list[str] = [
    "controlplane.apiserver.cli",
    "controlplane.scheduler.cli",
    "proxy.cli",
    "noded.cli",
    "controlplane.controllers.cli",
    "netplugin.agent",
    "lab.labcmd",
    "lab.demo",
    "controlplane.storage.cli",
    "controlplane.dns.cli",
    "lab.trace",
    "lab.users",
    "controlplane.metricsserver.cli",
    "lab.topology",
    "lab.dashboard.cli",
    "lab.backup",
    "lab.etcdcmd",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubelab",
        description="kubelab: a small, real Kubernetes for learning how its networking works.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMANDS:
        module = importlib.import_module(module_name)
        module.register(sub)
    return parser


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
