"""``python -m proxy ...`` is ``kubelab proxy ...``."""

from __future__ import annotations

import sys

from lab import cli


def main() -> int:
    return cli.main(["proxy", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
