"""``python -m noded ARGS`` is ``kubelab noded ARGS`` (see controlplane.componentbase)."""

import sys

from controlplane.componentbase import run_command
from noded.cli import register

if __name__ == "__main__":
    sys.exit(run_command("noded", register))
