"""``python -m noded ...`` is ``kubelab noded ...``."""

from __future__ import annotations

import sys

from lab.cli import main

if __name__ == "__main__":
    sys.exit(main(["noded", *sys.argv[1:]]))
