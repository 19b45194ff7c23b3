"""``ServerOptions``: everything that configures one API server instance (no module globals).

Role: the CLI turns flags into a ``ServerOptions``; ``create_app(store, options=...)`` reads only
this object, so tests can build servers with different settings side by side in one process.

Invariants: options are immutable once the app is built (frozen dataclass); paths are absolute or
relative to the process's working directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from controlplane.api import limits

if TYPE_CHECKING:
    from controlplane.apiserver.auth import Authorizer, PeerIdentities

DEFAULT_MAX_BODY = limits.MAX_BODY_BYTES  # kube-apiserver's limit for a request body (3 MiB)


@dataclass(frozen=True)
class ServerOptions:
    service_cluster_ip_range: str = "10.96.0.0/12"
    service_node_port_range: str = "30000-32767"
    token_auth_file: Path | None = None
    # x509 identities of TLS peers (filled by the server's protocol classes; None = no x509 auth)
    peer_identities: PeerIdentities | None = None
    authorizer: Authorizer | None = None  # set: used instead of the --authorization-mode chain (tests)
    authorization_mode: str = "Node,RBAC"  # kube-apiserver's --authorization-mode (Node, RBAC, AlwaysAllow)
    anonymous_auth: bool = False  # True: requests without credentials run as system:anonymous
    kubelet_client_cert: Path | None = None
    kubelet_client_key: Path | None = None
    kubelet_ca: Path | None = None  # verify kubelets' serving certificates with this CA (None: don't)
    kubelet_port: int = 10250
    max_body_bytes: int = DEFAULT_MAX_BODY
    bootstrap: bool = True  # create the system namespaces and the ``kubernetes`` Service at start
    advertise_address: str = "127.0.0.1"
    secure_port: int = 6443
    # kube-apiserver's --endpoint-reconciler-type: "lease" (every live API server in default/kubernetes,
    # each by a record renewed within ttl) or "none" (the Endpoints are left alone)
    endpoint_reconciler_type: str = "lease"
    endpoint_reconciler_ttl: float = 15.0
    watch_bookmark_interval: float = 60.0
    watch_default_timeout: float = 1800.0
    watch_cache_window: int = 100_000  # events the watch cache keeps for resuming watchers
    watch_max_pending: int = 10_000  # events queued for one watcher before it is closed as too slow
    store_threads: int = 16  # store calls in flight (sqlite group-commits them; more only adds GIL churn)
    event_ttl: float = 3600.0  # Events older than this are deleted (kube-apiserver's --event-ttl)
    compaction_interval: float = 300.0  # seconds between store compactions (0: never)
    git_version: str = "v1.33.0-kubelab"
    # ServiceAccount tokens (kube-apiserver's --service-account-* and --api-audiences flags): the
    # key that signs TokenRequests, extra public keys that verify tokens, the issuer (``iss``),
    # the audiences the server accepts (default: the issuer) and the advertised JWKS address.
    service_account_signing_key_file: Path | None = None
    service_account_key_files: tuple[Path, ...] = ()
    service_account_issuer: str = "https://kubernetes.default.svc.cluster.local"
    api_audiences: tuple[str, ...] = ()
    service_account_jwks_uri: str = ""
    # Admission plugins switched off (kube-apiserver's --disable-admission-plugins), e.g.
    # ("ServiceAccount",) for an API server that runs without a controller-manager.
    disable_admission_plugins: tuple[str, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)
    # Called once the app has started (tests and ``kubelab controlplane`` use it).
    on_started: Callable[[], None] | None = None
