"""What every kubelab component's entry point shares: log setup and running one registered command.

Role: a component (the API server, scheduler, controller-manager, DNS, metrics server, noded, the
service proxy, the network agent) owns its command: its CLI module's ``register(subparsers)`` adds
the parser and sets ``func``. ``kubelab <command>`` (``lab.cli``) and ``python -m <component>``
(each ``__main__``, through ``run_command``) both go through that one ``register``, so the two
spellings cannot drift apart, and no component needs ``lab`` to start (components never import
``lab``: the lab supervises them through their commands and the API, see .importlinter).

Invariants: every component logs the same way (``setup_logging``: one format, stderr, INFO or
DEBUG with ``-v``). Nothing here imports a component, so this module is as light as ``argparse``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any

#: One line per record, the same in every component, so the lab's logs read alike.
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(verbose: bool) -> None:
    """Root logging for a component process: INFO, or DEBUG when ``verbose``, to stderr."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format=LOG_FORMAT, stream=sys.stderr)


def command_parser(name: str, register: Callable[[Any], None], prog: str) -> argparse.ArgumentParser:
    """The parser of command ``name`` as ``register`` adds it, standing alone under ``prog``.

    ``register`` may add several commands (noded's module adds ``noded`` and ``image``); only
    ``name`` is kept. ``-v``/``--verbose`` is added to it (``kubelab`` has it before the command).
    """
    sub = argparse.ArgumentParser(prog=prog).add_subparsers(dest="command")
    register(sub)
    if name not in sub.choices:
        raise KeyError(f"{register.__module__}.register adds no {name!r} command")
    parser: argparse.ArgumentParser = sub.choices[name]
    parser.prog = prog
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    return parser


def run_command(
    name: str, register: Callable[[Any], None], argv: Sequence[str] | None = None, prog: str | None = None
) -> int:
    """Parse ``argv`` as command ``name`` and run it: what each component's ``__main__`` does.

    ``python -m <package> ARGS`` is then ``kubelab name ARGS`` (``-v`` may come anywhere).
    ``prog`` defaults to ``python -m`` and the package of ``register``'s module.
    """
    if prog is None:
        module = register.__module__
        prog = "python -m " + (module.rpartition(".")[0] if module.endswith(".cli") else module)
    parser = command_parser(name, register, prog=prog)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    setup_logging(args.verbose)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130
