"""``kubelab controlplane`` keeps aggregated ClusterRoles: a role labelled aggregate-to-view adds to ``view``
(and, through ``edit`` and ``admin``, to those), and leaves them when it is deleted."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.apiserver import start_apiserver
from tests.helpers.wait import wait_for

RBAC = "/apis/rbac.authorization.k8s.io/v1"
WIDGETS = {"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get", "list", "watch"]}


def test_aggregated_roles_follow_their_sources(tmp_path: Path) -> None:
    srv = start_apiserver(tmp_path, store="sqlite", controlplane=True)
    try:
        with srv.http() as c:
            role = {
                "metadata": {
                    "name": "widget-viewer",
                    "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"},
                },
                "rules": [WIDGETS],
            }
            assert c.post(f"{RBAC}/clusterroles", json=role).status_code == 201

            def rules_of(name: str) -> list[dict[str, object]]:
                return list(c.get(f"{RBAC}/clusterroles/{name}").json().get("rules") or [])

            for name in ("view", "edit", "admin"):
                wait_for(lambda n=name: WIDGETS in rules_of(n), 20, message=f"{name} aggregates widget-viewer")
            assert c.delete(f"{RBAC}/clusterroles/widget-viewer").status_code == 200
            for name in ("view", "edit", "admin"):
                wait_for(lambda n=name: WIDGETS not in rules_of(n), 20, message=f"{name} drops widget-viewer")
    finally:
        srv.stop()
