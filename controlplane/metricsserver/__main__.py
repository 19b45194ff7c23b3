"""``python -m controlplane.metricsserver``: the same as ``kubelab metrics-server``."""

import sys

from controlplane.metricsserver.cli import main

sys.exit(main())
