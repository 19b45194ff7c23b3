"""Admission from the in-memory lister on etcd keeps read-your-writes: a pod created right after its
namespace's LimitRange gets the LimitRange's defaults, and right after a ResourceQuota of one pod,
the second pod is refused (controlplane/apiserver/listers.py)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.apiserver import start_apiserver
from tests.helpers.etcd import start_etcd

POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "p"},
    "spec": {"containers": [{"name": "c", "image": "busybox"}]},
}


def _pod(name: str) -> dict[str, object]:
    return {**POD, "metadata": {"name": name}}


def test_limitrange_and_quota_apply_to_the_very_next_pod(tmp_path: Path) -> None:
    etcd = start_etcd(tmp_path)
    srv = start_apiserver(tmp_path, store="etcd", etcd_endpoints=[etcd.endpoint])
    try:
        with srv.http() as c:
            base = "/api/v1/namespaces/default"
            lr = {
                "apiVersion": "v1",
                "kind": "LimitRange",
                "metadata": {"name": "defaults"},
                "spec": {"limits": [{"type": "Container", "defaultRequest": {"cpu": "123m"}}]},
            }
            assert c.post(f"{base}/limitranges", json=lr).status_code == 201
            r = c.post(f"{base}/pods", json=_pod("a"))
            assert r.status_code == 201, r.text
            assert r.json()["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "123m"
            quota = {
                "apiVersion": "v1",
                "kind": "ResourceQuota",
                "metadata": {"name": "one-more"},
                "spec": {"hard": {"pods": "2"}},
            }
            assert c.post(f"{base}/resourcequotas", json=quota).status_code == 201
            assert c.post(f"{base}/pods", json=_pod("b")).status_code == 201
            r = c.post(f"{base}/pods", json=_pod("c"))
            assert r.status_code == 403, r.text
            assert "exceeded quota" in r.json()["message"]
    finally:
        srv.stop()
        etcd.stop()
