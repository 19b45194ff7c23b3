"""``python -m controlplane.metricsserver ARGS`` is ``kubelab metrics-server ARGS`` (see controlplane.componentbase)."""

import sys

from controlplane.componentbase import run_command
from controlplane.metricsserver.cli import register

if __name__ == "__main__":
    sys.exit(run_command("metrics-server", register))
