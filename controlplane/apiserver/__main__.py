"""``python -m controlplane.apiserver ARGS`` is ``kubelab apiserver ARGS`` (see controlplane.componentbase)."""

import sys

from controlplane.apiserver.cli import register
from controlplane.componentbase import run_command

if __name__ == "__main__":
    sys.exit(run_command("apiserver", register))
