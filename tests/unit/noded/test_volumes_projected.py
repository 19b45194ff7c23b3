"""AtomicWriter layout, projected volumes and the token manager's refresh schedule (no root)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from noded.volumes import TokenManager, VolumeError, prepare_volumes, write_atomic

POD: dict[str, Any] = {
    "metadata": {"name": "web", "namespace": "shop", "uid": "pod-1"},
    "spec": {
        "serviceAccountName": "builder",
        "volumes": [
            {
                "name": "kube-api-access-x2b4c",
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                    }
                                ]
                            }
                        },
                    ],
                    "defaultMode": 420,
                },
            }
        ],
    },
}


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


class FakeTokens:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.requests: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, ns: str, sa: str, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append((ns, sa, body))
        exp = datetime.fromtimestamp(self.clock() + body["spec"]["expirationSeconds"], UTC)
        return {
            "spec": {"expirationSeconds": body["spec"]["expirationSeconds"]},
            "status": {"token": f"tok-{len(self.requests)}", "expirationTimestamp": exp.strftime("%Y-%m-%dT%H:%M:%SZ")},
        }


def test_atomic_writer_layout_and_swap(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    assert write_atomic(target, {"a": b"1", "dir/b": b"2"})
    data = target / "..data"
    assert data.is_symlink() and os.readlink(data).startswith("..")
    first = data.resolve()
    assert os.readlink(target / "a") == "..data/a" and os.readlink(target / "dir") == "..data/dir"
    assert (target / "a").read_bytes() == b"1" and (target / "dir" / "b").read_bytes() == b"2"
    assert not write_atomic(target, {"a": b"1", "dir/b": b"2"})  # unchanged: nothing written
    assert data.resolve() == first
    assert write_atomic(target, {"a": b"new"})
    assert (target / "a").read_bytes() == b"new"
    assert not (target / "dir").exists() and not first.exists()  # old payload and stale links gone
    names = sorted(p.name for p in target.iterdir())
    assert names == sorted(["..data", data.resolve().name, "a"])
    with pytest.raises(VolumeError, match=r"without '\.\.'"):
        write_atomic(target, {"../escape": b"x"})


def test_projected_service_account_volume(tmp_path: Path) -> None:
    clock = Clock()
    fake = FakeTokens(clock)
    tokens = TokenManager(fake, clock=clock)
    objs = {("configMap", "shop", "kube-root-ca.crt"): {"data": {"ca.crt": "PEM", "other": "x"}}}
    vols = prepare_volumes(POD, tmp_path / "pod", lambda k, ns, n: objs.get((k, ns, n)), tokens)
    d = Path(vols["kube-api-access-x2b4c"])
    assert (d / "token").read_text() == "tok-1" and (d / "ca.crt").read_text() == "PEM"
    assert (d / "namespace").read_text() == "shop" and not (d / "other").exists()
    assert oct((d / "token").stat().st_mode & 0o777) == oct(0o644)
    [(ns, sa, body)] = fake.requests
    assert (ns, sa) == ("shop", "builder")
    assert body["spec"]["expirationSeconds"] == 3607
    assert body["spec"]["boundObjectRef"] == {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "pod-1"}
    with pytest.raises(VolumeError, match=r'configmaps "kube-root-ca\.crt" not found'):
        prepare_volumes(POD, tmp_path / "pod2", lambda *a: None, tokens)


def test_token_refreshed_at_80_percent_of_its_lifetime(tmp_path: Path) -> None:
    clock = Clock()
    fake = FakeTokens(clock)
    tokens = TokenManager(fake, clock=clock)
    src = POD["spec"]["volumes"][0]["projected"]["sources"][0]["serviceAccountToken"]
    assert tokens.refresh_in(POD) == 0.0  # nothing cached yet: due now
    assert tokens.token(POD, src) == "tok-1"
    assert tokens.refresh_in(POD) == pytest.approx(0.8 * 3607, abs=1)
    clock.t += 0.8 * 3607 - 20  # before 80% (minus the largest jitter): cached
    assert tokens.token(POD, src) == "tok-1"
    clock.t += 21
    assert tokens.refresh_in(POD) is not None and tokens.refresh_in(POD) <= 0  # type: ignore[operator]
    assert tokens.token(POD, src) == "tok-2"
    assert len(fake.requests) == 2
    tokens.forget("pod-1")
    assert tokens.refresh_in(POD) == 0.0
    assert tokens.refresh_in({"spec": {}}) is None


def test_long_tokens_refresh_after_24_hours() -> None:
    clock = Clock()
    tokens = TokenManager(FakeTokens(clock), clock=clock)
    src = {"expirationSeconds": 7 * 24 * 3600, "path": "token"}
    pod = {
        **POD,
        "spec": {**POD["spec"], "volumes": [{"name": "t", "projected": {"sources": [{"serviceAccountToken": src}]}}]},
    }
    tokens.token(pod, src)
    assert tokens.refresh_in(pod) == pytest.approx(24 * 3600, abs=1)


def test_failed_refresh_keeps_a_valid_token_and_fails_without_one() -> None:
    clock = Clock()
    fake = FakeTokens(clock)
    calls = {"fail": False}

    def request(ns: str, sa: str, body: dict[str, Any]) -> dict[str, Any]:
        if calls["fail"]:
            raise OSError("API server unreachable")
        return fake(ns, sa, body)

    tokens = TokenManager(request, clock=clock)
    src = {"expirationSeconds": 3600, "path": "token"}
    assert tokens.token(POD, src) == "tok-1"
    calls["fail"] = True
    clock.t += 3000  # due, but the old token is still valid
    assert tokens.token(POD, src) == "tok-1"
    clock.t += 700  # expired
    with pytest.raises(VolumeError, match="failed to fetch token"):
        tokens.token(POD, src)
