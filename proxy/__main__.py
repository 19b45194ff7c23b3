"""``python -m proxy ARGS`` is ``kubelab proxy ARGS`` (see controlplane.componentbase)."""

import sys

from controlplane.componentbase import run_command
from proxy.cli import register

if __name__ == "__main__":
    sys.exit(run_command("proxy", register))
