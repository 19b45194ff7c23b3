"""componentstatus: health from leader Lease freshness and a store read, in kube-apiserver's shapes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from controlplane.api import errors, registry
from controlplane.api.tables import to_table
from controlplane.apiserver import componentstatus as cs

NOW = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)


def lease(renewed: str, duration: int = 15, holder: str = "host_1") -> dict[str, Any]:
    return {"spec": {"holderIdentity": holder, "leaseDurationSeconds": duration, "renewTime": renewed}}


def test_fresh_lease_is_healthy_stale_or_missing_is_not() -> None:
    assert cs.lease_health("kube-scheduler", lease("2026-03-10T11:59:50.000000Z"), NOW) == (True, "ok")
    healthy, err = cs.lease_health("kube-scheduler", lease("2026-03-10T11:59:00.000000Z"), NOW)
    assert not healthy
    assert err == "leader host_1 stopped renewing lease kube-system/kube-scheduler at 2026-03-10T11:59:00.000000Z"
    assert cs.lease_health("kube-scheduler", None, NOW) == (
        False,
        "no leader: lease kube-system/kube-scheduler not found",
    )
    assert cs.lease_health("x", {"spec": {}}, NOW)[0] is False


def test_list_order_and_conditions() -> None:
    items = cs.component_statuses(
        {"kube-scheduler": lease("2026-03-10T11:59:59Z"), "kube-controller-manager": None}, "sqlite", None, NOW
    )
    assert [i["metadata"]["name"] for i in items] == ["scheduler", "controller-manager", "sqlite"]
    assert items[0]["conditions"] == [{"type": "Healthy", "status": "True", "message": "ok"}]
    assert items[1]["conditions"][0]["status"] == "False" and "error" in items[1]["conditions"][0]
    assert items[2]["conditions"] == [{"type": "Healthy", "status": "True", "message": '{"health":"true","reason":""}'}]
    rows = to_table(registry.COMPONENTSTATUSES, items, list_rv="", now=NOW)["rows"]
    assert rows[0]["cells"] == ["scheduler", "Healthy", "ok", ""]
    assert rows[1]["cells"][:2] == ["controller-manager", "Unhealthy"]


def test_store_failure_and_lookup() -> None:
    def boom() -> object:
        raise OSError("disk I/O error")

    def no_lease(name: str) -> dict[str, Any]:
        raise errors.not_found("leases", name)

    leases, store_error = cs.read_inputs(no_lease, boom)
    assert leases == {"kube-scheduler": None, "kube-controller-manager": None}
    assert store_error == "store read failed: disk I/O error"
    items = cs.component_statuses(leases, "etcd-0", store_error, NOW)
    assert cs.lookup(items, "etcd-0")["conditions"][0] == {
        "type": "Healthy", "status": "False", "error": "store read failed: disk I/O error"
    }  # fmt: skip
    try:
        cs.lookup(items, "nope")
    except errors.NotFound as e:
        assert e.message == 'componentstatuses "nope" not found'
    else:
        raise AssertionError("lookup of an unknown component must be NotFound")


def test_store_names() -> None:
    class EtcdStore:
        pass

    class SqliteStore:
        pass

    assert cs.store_name(EtcdStore()) == "etcd-0" and cs.store_name(SqliteStore()) == "sqlite"
