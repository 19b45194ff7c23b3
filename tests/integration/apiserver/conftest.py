"""One real API server (subprocess, memory store) shared by the apiserver integration tests.

Tests that share it use names of their own, so they do not interfere; tests that need another
configuration (sqlite, restarts, small ranges) start their own server.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.helpers.apiserver import RunningApiServer, start_apiserver


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApiServer]:
    tmp = tmp_path_factory.mktemp("apiserver")
    token_file = tmp / "tokens.csv"
    token_file.write_text('secret-token,alice,uid-alice,"devs,ops"\nmasters-token,root,uid-root,system:masters\n')
    srv = start_apiserver(
        tmp, store="memory", extra_args=["--token-auth-file", str(token_file), "--watch-bookmark-interval", "1s"]
    )
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def http(server: RunningApiServer) -> Iterator[httpx.Client]:
    with server.http() as c:
        yield c
