"""``python -m controlplane.scheduler ARGS`` is ``kubelab scheduler ARGS`` (see controlplane.componentbase)."""

import sys

from controlplane.componentbase import run_command
from controlplane.scheduler.cli import register

if __name__ == "__main__":
    sys.exit(run_command("scheduler", register))
