"""``python -m lab.dashboard ARGS``: the dashboard alone, as the lab runs it.

``kubelab dashboard ARGS`` is the same command, but building ``kubelab``'s whole parser imports
every component's CLI module (about 15 MB of resident memory the dashboard never uses), so the
lab's supervisor starts this entry point instead.
"""

from __future__ import annotations

import argparse
import sys

from lab.cli import setup_logging
from lab.dashboard import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.dashboard")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    cli.register(sub)
    args = parser.parse_args(["dashboard", *(argv if argv is not None else sys.argv[1:])])
    setup_logging(args.verbose)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
