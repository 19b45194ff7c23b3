"""The lab's admin view of the cluster API, through the one API client (``controlplane.client``).

Role: ``kubelab up``/``status``/``trace`` read and write a few objects (Nodes, Pods, Services,
EndpointSlices) as the lab's admin; they do it with ``controlplane.client.rest.ApiClient`` and the
admin kubeconfig (``state.ADMIN_KUBECONFIG``), the same client every component uses, so errors
arrive as ``controlplane.api.errors`` (``NotFound``, ``AlreadyExists``, …) built from the server's
Status, not as raw HTTP errors.

Invariants: a client is made per call and closed (these are short CLI commands; the PKI and so the
kubeconfig change with every ``kubelab up``). Nothing here imports a component.
"""

from __future__ import annotations

from typing import Any

import httpx

from controlplane.api import errors
from controlplane.client.rest import ApiClient
from lab import state

#: What an unreachable, half-started or broken API server can raise (besides ``errors.ApiError``).
TRANSPORT_ERRORS = (OSError, ValueError, httpx.HTTPError)


def admin_client(timeout: float = 5.0, server: str | None = None) -> ApiClient:
    """A client with the lab's admin credentials (close it, or use it in ``with``); ``server``: one
    API server of an HA control plane instead of the endpoint the kubeconfig names."""
    if server is None:
        return ApiClient.from_kubeconfig(state.ADMIN_KUBECONFIG, timeout=timeout)
    from controlplane.client.kubeconfig import load_kubeconfig

    return ApiClient(server, config=load_kubeconfig(state.ADMIN_KUBECONFIG), timeout=timeout)


def api(method: str, path: str, body: dict[str, Any] | None = None, timeout: float = 5) -> dict[str, Any]:
    """One request as the admin; the decoded object (``{}`` for an empty answer); raises ApiError."""
    with admin_client(timeout) as client:
        answer = client.request(method, path, body=body, timeout=timeout)
    return answer if isinstance(answer, dict) else {}


def get(path: str) -> dict[str, Any]:
    return api("GET", path)


def ready(server: str | None = None) -> bool:
    """The API server (the kubeconfig's endpoint, or ``server``) answers ``/readyz`` with 200."""
    try:
        with admin_client(2.0, server) as client:
            client.request("GET", "/readyz", timeout=2)
        return True
    except (errors.ApiError, *TRANSPORT_ERRORS):
        return False
