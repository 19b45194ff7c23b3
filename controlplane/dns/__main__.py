"""``python -m controlplane.dns ARGS`` is ``kubelab dns ARGS`` (see controlplane.componentbase)."""

import sys

from controlplane.componentbase import run_command
from controlplane.dns.cli import register

if __name__ == "__main__":
    sys.exit(run_command("dns", register))
