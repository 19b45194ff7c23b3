"""The ``kubelab`` command: one entry point, one subcommand per component.

Each component owns its subcommand: a module listed in ``COMMANDS`` exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the parsed
namespace and returning an exit code). Only commands that exist are listed, so ``kubelab --help``
never offers something that is not there. Components can also be run as ``python -m <package>``
(each ``__main__`` runs the same ``register`` through ``controlplane.componentbase.run_command``).

Dispatch is lazy: the lab runs about a dozen long-lived ``kubelab <component>`` processes, and
importing every component's module into each of them cost ~20 MB of resident memory per process
(measured: the 2-worker lab went from 689.5 MB to 585 MB when each process imported only its own
command's module). So ``COMMANDS`` maps each subcommand name to its module, and ``main`` imports
only the module of the command asked for; ``kubelab --help`` (or no command) imports them all.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from controlplane.componentbase import setup_logging

# subcommand -> the module whose ``register(subparsers)`` adds it (a module may add several).
COMMANDS: dict[str, str] = {
    "apiserver": "controlplane.apiserver.cli",
    "controlplane": "controlplane.cli",
    "scheduler": "controlplane.scheduler.cli",
    "proxy": "proxy.cli",
    "noded": "noded.cli",
    "image": "noded.cli",
    "controller-manager": "controlplane.controllers.cli",
    "netagent": "netplugin.agent",
    "up": "lab.labcmd",
    "down": "lab.labcmd",
    "status": "lab.statuscmd",
    "node": "lab.statuscmd",
    "demo": "lab.demo",
    "store": "controlplane.storage.cli",
    "dns": "controlplane.dns.cli",
    "trace": "lab.trace",
    "user": "lab.users",
    "metrics-server": "controlplane.metricsserver.cli",
    "topology": "lab.topology",
    "dashboard": "lab.dashboard.cli",
    "backup": "lab.backup",
    "etcd": "lab.etcdcmd",
}


def command_modules(argv: Sequence[str] | None = None) -> list[str]:
    """The modules to import for this command line: the named command's only, else every one.

    The command is the first argument that is not an option (the only global option,
    ``-v``/``--verbose``, takes no value). Unknown commands import everything so argparse's
    "invalid choice" lists what exists.
    """
    command = next((a for a in (argv or []) if not a.startswith("-")), None)
    if command in COMMANDS:
        return [COMMANDS[command]]
    return list(dict.fromkeys(COMMANDS.values()))


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubelab",
        description="kubelab: a small, real Kubernetes for learning how its networking works.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in command_modules(argv):
        module = importlib.import_module(module_name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
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
