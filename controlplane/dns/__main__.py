import sys

from controlplane.dns.cli import main

sys.exit(main())
