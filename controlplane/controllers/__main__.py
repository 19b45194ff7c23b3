"""``python -m controlplane.controllers ARGS`` is ``kubelab controller-manager ARGS`` (componentbase)."""

import sys

from controlplane.componentbase import run_command
from controlplane.controllers.cli import register

if __name__ == "__main__":
    sys.exit(run_command("controller-manager", register))
