"""Robustness: concurrent writers through optimistic concurrency, and arbitrary bodies never give a 5xx."""

from __future__ import annotations

import json
import threading
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers.apiserver import RunningApiServer

CM = "/api/v1/namespaces/default/configmaps"


def test_concurrent_read_modify_write_loses_no_update(server: RunningApiServer, http: httpx.Client) -> None:
    http.post(CM, json={"metadata": {"name": "counter"}, "data": {"n": "0"}})
    workers, per = 8, 15
    conflicts = [0]
    lock = threading.Lock()

    def work() -> None:
        with server.http() as c:
            for _ in range(per):
                while True:
                    obj = c.get(f"{CM}/counter").json()
                    obj["data"]["n"] = str(int(obj["data"]["n"]) + 1)
                    r = c.put(f"{CM}/counter", json=obj)
                    if r.status_code == 200:
                        break
                    assert r.status_code == 409, r.text
                    with lock:
                        conflicts[0] += 1

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert http.get(f"{CM}/counter").json()["data"]["n"] == str(workers * per)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
keys = st.sampled_from(["metadata", "spec", "status", "kind", "apiVersion", "data", "ports", "containers", "name"])
objects = st.dictionaries(keys, json_values, max_size=5)
bodies = st.fixed_dictionaries(
    {"metadata": st.fixed_dictionaries({"name": st.just("fuzz")}, optional={"labels": json_values})},
    optional={
        "spec": st.dictionaries(
            st.sampled_from(["containers", "ports", "selector", "replicas", "type", "template"]),
            json_values,
            max_size=4,
        )
    },
)
PATHS = [
    "/api/v1/namespaces/default/pods",
    "/api/v1/namespaces/default/services",
    "/apis/apps/v1/namespaces/default/deployments",
    "/apis/batch/v1/namespaces/default/jobs",
]


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(path=st.sampled_from(PATHS), body=st.one_of(objects, bodies))
def test_arbitrary_create_bodies_never_5xx(http: httpx.Client, path: str, body: dict[str, Any]) -> None:
    r = http.post(path, content=json.dumps(body), headers={"Content-Type": "application/json"})
    assert r.status_code < 500, (body, r.text)
    assert r.json().get("kind") != "Status" or r.json()["status"] == "Failure"
    if r.status_code == 201:
        http.delete(f"{path}/{r.json()['metadata']['name']}", params={"gracePeriodSeconds": "0"})


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    patch=objects,
    ctype=st.sampled_from(
        [
            "application/merge-patch+json",
            "application/strategic-merge-patch+json",
            "application/json-patch+json",
            "application/apply-patch+yaml",
        ]
    ),
)
def test_arbitrary_patches_never_5xx(http: httpx.Client, patch: dict[str, Any], ctype: str) -> None:
    path = "/apis/apps/v1/namespaces/default/deployments/fuzz-target"
    if http.get(path).status_code == 404:
        dep = {
            "metadata": {"name": "fuzz-target"},
            "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
            },
        }
        http.post("/apis/apps/v1/namespaces/default/deployments", json=dep)
    r = http.patch(path, content=json.dumps(patch), headers={"Content-Type": ctype})
    assert r.status_code < 500, (patch, ctype, r.text)
