"""``python -m controlplane.apiserver``: the same as ``kubelab apiserver``."""

from __future__ import annotations

import argparse
import logging
import sys

from controlplane.apiserver import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controlplane.apiserver")
    parser.add_argument("-v", "--verbose", action="store_true")
    cli.add_server_flags(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return cli.run_apiserver(args)


if __name__ == "__main__":
    sys.exit(main())
