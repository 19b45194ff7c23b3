"""Test tiers (DESIGN.md §2): unit/contract/integration need no root; privileged and e2e do.

Tests marked ``privileged`` or ``e2e`` run only when pytest runs as root (``sudo make test``, and
CI); otherwise they are skipped with a reason. Privileged tests work only inside network
namespaces they create, with the safety routes of DESIGN.md §3 held (``tests/helpers/netns.py``).
"""

from __future__ import annotations

import os
import tempfile

import pytest
from hypothesis.configuration import set_hypothesis_home_dir

# Hypothesis keeps its example database in the current directory unless told otherwise; keep it
# out of the work tree (a clean checkout stays clean, and no test run depends on an old one).
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    set_hypothesis_home_dir(os.path.join(tempfile.gettempdir(), "kubelab-hypothesis"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip = pytest.mark.skip(reason="needs root (run `sudo make test`)")
    for item in items:
        path = str(item.path)
        if "/tests/privileged/" in path:
            item.add_marker(pytest.mark.privileged)
        if "/tests/e2e/" in path:
            item.add_marker(pytest.mark.e2e)
        if os.geteuid() != 0 and ("privileged" in item.keywords or "e2e" in item.keywords):
            item.add_marker(skip)
