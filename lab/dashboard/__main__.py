"""``python -m lab.dashboard ARGS``: the dashboard alone, as the lab runs it.

``kubelab dashboard ARGS`` is the same command (``lab.cli`` imports only this command's module);
the lab's supervisor starts this entry point, like every component's, through
``controlplane.componentbase.run_command``.
"""

import sys

from controlplane.componentbase import run_command
from lab.dashboard.cli import register

if __name__ == "__main__":
    sys.exit(run_command("dashboard", register))
