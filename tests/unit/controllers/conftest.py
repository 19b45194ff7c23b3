from __future__ import annotations

import pytest

from tests.unit.controllers.fake import FakeCluster


@pytest.fixture
def cluster() -> FakeCluster:
    return FakeCluster()
