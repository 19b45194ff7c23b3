"""The node components' debug-endpoint authn/authz against a real API server (TokenReview and
SubjectAccessReview as controlplane/client/delegated.py sends them, RBAC as bootstrap.py grants it).

The reviews are posted with the proxy's own identity (a ``system:kube-proxy`` client certificate
from the cluster CA), which ``system:auth-delegator`` allows. Tokens from the fixture's token file:
``masters-token`` (root, ``system:masters``) and ``secret-token`` (alice, groups devs/ops). Alice is
bound to ``system:kubelab-node-debug`` in the middle of the test (in force once the API server's RBAC
informer has it); the binding is deleted at the end.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from controlplane import pki
from controlplane.client import delegated
from controlplane.client.rest import ApiClient
from tests.helpers.apiserver import RunningApiServer
from tests.helpers.wait import wait_for

RBAC_GROUP = "rbac.authorization.k8s.io"
RBAC = f"/apis/{RBAC_GROUP}/v1"


def proxy_client(server: RunningApiServer, tmp: Path) -> ApiClient:
    ca = pki.CertificateAuthority(server.ca_file.read_bytes(), (server.data_dir / "pki" / "ca.key").read_bytes())
    cert, key = pki.issue_cert(ca, "system:kube-proxy")
    (tmp / "proxy.crt").write_bytes(cert)
    (tmp / "proxy.key").write_bytes(key)
    return ApiClient(server.url, ca_file=str(server.ca_file), cert_file=str(tmp / "proxy.crt"),
                     key_file=str(tmp / "proxy.key"))  # fmt: skip


def test_tokens_and_rbac_decide_401_403_and_200(server: RunningApiServer, tmp_path: Path) -> None:
    with proxy_client(server, tmp_path) as client:
        post = delegated.client_poster(client)
        auth = delegated.DelegatedAuth(post)
        assert auth.check(None, "Bearer masters-token", "GET", "/debug/network") is None
        assert auth.check(None, "Bearer masters-token", "GET", "/debug/rules") is None
        denied = auth.check(None, "Bearer secret-token", "GET", "/debug/network")
        assert denied is not None and denied.code == 403
        assert denied.message.startswith('forbidden: User "alice" cannot get path "/debug/network"')
        unknown = auth.check(None, "Bearer not-a-token", "GET", "/debug/network")
        assert unknown is not None and unknown.code == 401
        # a certificate user the API server knows nothing else about: authenticated, not authorized
        denied = auth.check({"subject": ((("commonName", "carol"),),)}, "", "GET", "/debug/rules")
        assert denied is not None and denied.code == 403

        name = f"debug-alice-{uuid.uuid4().hex[:6]}"
        admin = server.http()
        binding = {
            "metadata": {"name": name},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": "system:kubelab-node-debug"},
            "subjects": [{"apiGroup": RBAC_GROUP, "kind": "User", "name": "alice"}],
        }
        assert admin.post(f"{RBAC}/clusterrolebindings", json=binding).status_code == 201
        try:
            # RBAC reads bindings from the API server's informer, as kube-apiserver's does: the new
            # one is in force once the watch delivered it (the clean room once asked first). Each
            # try is a fresh DelegatedAuth: a denial is cached for 10 s, as in `auth` above.
            def alice_allowed() -> bool:
                return delegated.DelegatedAuth(post).check(None, "Bearer secret-token", "GET", "/debug/network") is None

            wait_for(alice_allowed, timeout=10, message="alice's new ClusterRoleBinding in force")
            fresh = delegated.DelegatedAuth(post)
            assert fresh.check(None, "Bearer secret-token", "GET", "/debug/network") is None
            assert fresh.check(None, "Bearer secret-token", "GET", "/debug/network/route") is None
            assert fresh.check(None, "Bearer secret-token", "GET", "/debug/rules") is None
            other = fresh.check(None, "Bearer secret-token", "GET", "/debug/pprof")
            assert other is not None and other.code == 403  # only the node debug paths
        finally:
            admin.delete(f"{RBAC}/clusterrolebindings/{name}")
