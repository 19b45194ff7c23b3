"""A real API server (subprocess, memory store) per module, plus hollow nodes and a fake kubelet."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controlplane.client.rest import ApiClient
from tests.helpers.apiserver import RunningApiServer, start_apiserver


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApiServer]:
    srv = start_apiserver(tmp_path_factory.mktemp("sched-api"), store="memory")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def client(server: RunningApiServer) -> Iterator[ApiClient]:
    c = ApiClient.from_kubeconfig(server.kubeconfig)
    yield c
    c.close()
