"""The stored form of objects and the resourceVersion splice used by the get/list fast path."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from controlplane.apiserver.resources import ResourceOps
from controlplane.storage.interface import KeyValue


@pytest.mark.parametrize(
    "obj",
    [
        {
            "spec": {"template": {"metadata": {"name": "inner"}}},
            "metadata": {"name": "a", "resourceVersion": "7"},
            "kind": "X",
            "apiVersion": "v1",
        },
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}},
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "n", "labels": {"metadata": "{"}},
            "data": {"k": '"metadata":{'},
        },
    ],
)
def test_raw_splice_equals_decode(obj: dict[str, Any]) -> None:
    value = ResourceOps.encode(obj)
    assert b"resourceVersion" not in value
    kv = KeyValue("/registry/x/a", value, 3, 42)
    spliced = orjson.loads(ResourceOps.raw(kv))
    assert spliced == ResourceOps.decode(kv)
    assert spliced["metadata"]["resourceVersion"] == "42"
    assert list(spliced)[:3] == ["apiVersion", "kind", "metadata"]


def test_raw_of_foreign_bytes_falls_back_to_decoding() -> None:
    kv = KeyValue("/registry/x/a", b'{"metadata":{"name":"a"},"apiVersion":"v1","kind":"X"}', 1, 5)
    assert orjson.loads(ResourceOps.raw(kv))["metadata"] == {"name": "a", "resourceVersion": "5"}


def test_generate_name_collision_draws_again(monkeypatch: pytest.MonkeyPatch) -> None:
    from controlplane.api import registry
    from controlplane.apiserver import resources
    from controlplane.apiserver.admission import Admission
    from controlplane.storage.memory import MemoryStore

    store = MemoryStore()
    ops = ResourceOps(store, Admission(store))
    ops.create(registry.NAMESPACES, None, {"metadata": {"name": "default"}})
    draws = iter([list("aaaaa"), list("aaaaa"), list("bbbbb")])
    monkeypatch.setattr(resources.random, "choices", lambda population, k: next(draws))
    body = {"metadata": {"generateName": "cm-"}}
    assert ops.create(registry.CONFIGMAPS, "default", dict(body))["metadata"]["name"] == "cm-aaaaa"
    assert ops.create(registry.CONFIGMAPS, "default", dict(body))["metadata"]["name"] == "cm-bbbbb"
