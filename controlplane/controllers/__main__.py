"""``python -m controlplane.controllers``: the same as ``kubelab controller-manager``."""

from __future__ import annotations

import argparse
import logging
import sys

from controlplane.controllers import cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m controlplane.controllers")
    parser.add_argument("-v", "--verbose", action="store_true")
    cli.add_flags(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return cli.run(args)


if __name__ == "__main__":
    sys.exit(main())
