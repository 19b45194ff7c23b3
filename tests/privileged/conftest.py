from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.netns import NetnsFactory, netns_factory


@pytest.fixture
def netns() -> Iterator[NetnsFactory]:
    """Make throwaway namespaces: ``ns = netns("host")``; all are removed at teardown."""
    with netns_factory() as factory:
        yield factory

