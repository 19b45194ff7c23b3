import sys

from controlplane.scheduler.cli import main

sys.exit(main())
