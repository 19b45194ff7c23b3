"""Root CA publisher: kube-root-ca.crt in every namespace, put back when changed or deleted."""

from __future__ import annotations

from controlplane.api.registry import CONFIGMAPS, NAMESPACES
from controlplane.controllers.rootcacertpublisher import DESCRIPTION, RootCACertPublisher
from tests.unit.controllers.fake import FakeCluster

CA = b"-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n"


def test_publishes_and_repairs_the_root_ca(cluster: FakeCluster) -> None:
    ctl = RootCACertPublisher(cluster.context(), CA)
    cluster.seed(NAMESPACES, {"metadata": {"name": "team"}})
    assert "team" in cluster.queues[ctl.name].drain()
    ctl.sync("team")
    cm = cluster.obj(CONFIGMAPS, "kube-root-ca.crt", "team")
    assert cm is not None and cm["data"] == {"ca.crt": CA.decode()}
    assert cm["metadata"]["annotations"]["kubernetes.io/description"] == DESCRIPTION
    ctl.sync("team")
    assert len(cluster.all(CONFIGMAPS)) == 1  # idempotent
    cm["data"] = {"ca.crt": "tampered", "extra": "x"}
    cluster.update(CONFIGMAPS, cm)
    assert "team" in cluster.queues[ctl.name].drain()
    ctl.sync("team")
    assert cluster.obj(CONFIGMAPS, "kube-root-ca.crt", "team")["data"] == {"ca.crt": CA.decode()}  # type: ignore[index]
    cluster.delete(CONFIGMAPS, "kube-root-ca.crt", "team")
    assert "team" in cluster.queues[ctl.name].drain()
    ctl.sync("team")
    assert cluster.obj(CONFIGMAPS, "kube-root-ca.crt", "team") is not None


def test_terminating_and_missing_namespaces_are_skipped(cluster: FakeCluster) -> None:
    ctl = RootCACertPublisher(cluster.context(), CA)
    cluster.seed(NAMESPACES, {"metadata": {"name": "going"}, "status": {"phase": "Terminating"}})
    ctl.sync("going")
    ctl.sync("never-existed")
    assert cluster.all(CONFIGMAPS) == []
