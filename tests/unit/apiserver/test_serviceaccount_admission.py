"""The ServiceAccount admission plugin and TokenRequest validation (pure; a memory store, no root)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import orjson
import pytest

from controlplane.api import errors, registry
from controlplane.apiserver import serviceaccount_admission as sa_adm
from controlplane.apiserver.options import ServerOptions
from controlplane.apiserver.serviceaccounts import ServiceAccounts
from controlplane.storage.memory import MemoryStore

SA = {"metadata": {"name": "default", "namespace": "shop", "uid": "sa-1"}}


def pod(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "web", "namespace": "shop"},
        "spec": {
            "initContainers": [{"name": "init", "image": "busybox"}],
            "containers": [{"name": "app", "image": "hello"}, {"name": "side", "image": "busybox"}],
            **spec,
        },
    }


class Lookups:
    def __init__(self, sas: dict[tuple[str, str], dict[str, Any]]) -> None:
        self.sas = sas
        self.calls: list[tuple[str, str]] = []
        self.sleeps: list[float] = []

    def __call__(self, ns: str, name: str) -> dict[str, Any] | None:
        self.calls.append((ns, name))
        return self.sas.get((ns, name))

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)


def test_defaults_the_service_account_and_mounts_the_token_volume() -> None:
    look = Lookups({("shop", "default"): SA})
    p = pod()
    sa_adm.admit_pod(p, look, look.sleep)
    spec = p["spec"]
    assert spec["serviceAccountName"] == "default" and spec["serviceAccount"] == "default"
    [vol] = spec["volumes"]
    assert vol["name"].startswith("kube-api-access-") and len(vol["name"]) == len("kube-api-access-") + 5
    assert set(vol["name"][-5:]) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert vol["projected"] == {
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {
                "downwardAPI": {
                    "items": [
                        {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}
                    ]
                }
            },
        ],
        "defaultMode": 420,
    }
    mount = {"name": vol["name"], "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
    for c in spec["initContainers"] + spec["containers"]:
        assert c["volumeMounts"] == [mount]
    assert look.sleeps == []


def test_deprecated_field_is_read_and_mirrored() -> None:
    look = Lookups({("shop", "builder"): {"metadata": {"name": "builder"}}})
    p = pod(serviceAccount="builder")
    sa_adm.admit_pod(p, look, look.sleep)
    assert p["spec"]["serviceAccountName"] == p["spec"]["serviceAccount"] == "builder"
    p = pod(serviceAccountName="builder", serviceAccount="ignored")
    sa_adm.mirror_deprecated_field(p)
    assert p["spec"]["serviceAccount"] == "builder"


def test_missing_service_account_is_forbidden_with_kubernetes_wording() -> None:
    look = Lookups({})
    p = pod(serviceAccountName="builder")
    with pytest.raises(errors.Forbidden) as e:
        sa_adm.admit_pod(p, look, look.sleep)
    assert e.value.code == 403
    assert e.value.message == (
        'pods "web" is forbidden: error looking up service account shop/builder: serviceaccount "builder" not found'
    )
    assert look.calls == [("shop", "builder")] and look.sleeps == []  # one attempt for a named SA
    gen = pod()
    gen["metadata"] = {"generateName": "web-", "name": "web-x7k2p", "namespace": "shop"}  # generated already
    with pytest.raises(errors.Forbidden, match=r'^pods "web-" is forbidden: .*serviceaccount "default" not found'):
        sa_adm.admit_pod(gen, look, look.sleep)
    # default is retried 10 times, 100–200 ms apart (the controller may be about to create it)
    assert look.calls[1:] == [("shop", "default")] * 10
    assert len(look.sleeps) == 9 and all(0.1 <= s < 0.2 for s in look.sleeps)


def test_default_found_on_a_retry() -> None:
    look = Lookups({})
    answers = iter([None, None, SA])
    sa = sa_adm.get_service_account(lambda ns, n: next(answers), "shop", "default", look.sleep)
    assert sa == SA and len(look.sleeps) == 2


@pytest.mark.parametrize(
    ("pod_flag", "sa_flag", "mounted"),
    [(None, None, True), (False, None, False), (None, False, False), (True, False, True), (False, True, False)],
)
def test_automount_pod_wins_over_service_account(pod_flag: Any, sa_flag: Any, mounted: bool) -> None:
    sa = copy.deepcopy(SA)
    if sa_flag is not None:
        sa["automountServiceAccountToken"] = sa_flag
    p = pod(**({} if pod_flag is None else {"automountServiceAccountToken": pod_flag}))
    sa_adm.admit_pod(p, Lookups({("shop", "default"): sa}))
    assert bool(p["spec"].get("volumes")) is mounted
    assert all(bool(c.get("volumeMounts")) is mounted for c in p["spec"]["containers"])


def test_existing_mount_at_the_path_and_existing_volume_are_kept() -> None:
    own = {"name": "mine", "mountPath": sa_adm.TOKEN_MOUNT_PATH}
    p = pod(volumes=[{"name": "mine", "emptyDir": {}}, {"name": "kube-api-access-abcde", "emptyDir": {}}])
    p["spec"]["containers"][0]["volumeMounts"] = [own]
    sa_adm.admit_pod(p, Lookups({("shop", "default"): SA}))
    assert [v["name"] for v in p["spec"]["volumes"]] == ["mine", "kube-api-access-abcde"]
    assert p["spec"]["containers"][0]["volumeMounts"] == [own]
    assert p["spec"]["containers"][1]["volumeMounts"][0]["name"] == "kube-api-access-abcde"


def test_image_pull_secrets_come_from_the_service_account() -> None:
    sa = {**SA, "imagePullSecrets": [{"name": "regcred"}]}
    p = pod()
    sa_adm.admit_pod(p, Lookups({("shop", "default"): sa}))
    assert p["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    p = pod(imagePullSecrets=[{"name": "mine"}])
    sa_adm.admit_pod(p, Lookups({("shop", "default"): sa}))
    assert p["spec"]["imagePullSecrets"] == [{"name": "mine"}]


def test_mirror_pods_are_left_alone_or_refused() -> None:
    ann = {"kubernetes.io/config.mirror": "abc"}
    p = pod()
    p["metadata"]["annotations"] = ann
    before = copy.deepcopy(p)
    sa_adm.admit_pod(p, Lookups({}))
    assert p == before
    for spec, msg in [
        ({"serviceAccountName": "default"}, "a mirror pod may not reference service accounts"),
        ({"volumes": [{"name": "s", "secret": {"secretName": "x"}}]}, "a mirror pod may not reference secrets"),
        (
            {"volumes": [{"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "t"}}]}}]},
            "a mirror pod may not use ServiceAccountToken volume projections",
        ),
    ]:
        bad = pod(**spec)
        bad["metadata"]["annotations"] = ann
        with pytest.raises(errors.Forbidden, match=msg):
            sa_adm.admit_pod(bad, Lookups({}))


# -- TokenRequest ---------------------------------------------------------------------------------


@pytest.fixture
def sas(tmp_path: Path) -> ServiceAccounts:
    from controlplane import pki

    p = pki.ensure_cluster_pki(tmp_path)
    store = MemoryStore()
    for res, ns, obj in [
        (registry.SERVICEACCOUNTS, "shop", {"metadata": {"name": "builder", "namespace": "shop", "uid": "sa-1"}}),
        (
            registry.PODS,
            "shop",
            {
                "metadata": {"name": "web", "namespace": "shop", "uid": "pod-1"},
                "spec": {"serviceAccountName": "builder"},
            },
        ),
        (registry.PODS, "shop", {"metadata": {"name": "other", "namespace": "shop", "uid": "pod-2"}, "spec": {}}),
    ]:
        store.create(res.storage_key(obj["metadata"]["name"], ns), orjson.dumps(obj))
    return ServiceAccounts(store, ServerOptions(service_account_signing_key_file=p.sa_key))


def test_token_request_defaults_and_binding(sas: ServiceAccounts) -> None:
    tr = sas.create_token(
        "shop", "builder", {"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web"}}}
    )
    assert tr["kind"] == "TokenRequest" and tr["apiVersion"] == "authentication.k8s.io/v1"
    assert tr["spec"]["audiences"] == ["https://kubernetes.default.svc.cluster.local"]
    assert tr["spec"]["expirationSeconds"] == 3600
    assert sas.verifier is not None
    claims = sas.verifier.verify(tr["status"]["token"])
    assert claims["kubernetes.io"]["pod"] == {"name": "web", "uid": "pod-1"}
    assert tr["status"]["expirationTimestamp"].endswith("Z")


@pytest.mark.parametrize(
    ("name", "body", "err", "message"),
    [
        (
            "builder",
            {"spec": {"expirationSeconds": 10}},
            errors.Invalid,
            'TokenRequest.authentication.k8s.io "builder" is invalid: spec.expirationSeconds: Invalid value: 10: '
            "may not specify a duration less than 10 minutes",
        ),
        ("nobody", {}, errors.NotFound, 'serviceaccounts "nobody" not found'),
        (
            "builder",
            {"spec": {"boundObjectRef": {"kind": "Pod", "name": "gone"}}},
            errors.NotFound,
            'pods "gone" not found',
        ),
        (
            "builder",
            {"spec": {"boundObjectRef": {"kind": "Pod", "name": "other"}}},
            errors.BadRequest,
            'cannot bind token for serviceaccount "builder" to pod running with different serviceaccount name.',
        ),
        (
            "builder",
            {"spec": {"boundObjectRef": {"kind": "Pod", "name": "web", "uid": "old"}}},
            errors.Conflict,
            "the UID in the bound object reference (old) does not match",
        ),
        (
            "builder",
            {"spec": {"boundObjectRef": {"kind": "Deployment", "apiVersion": "apps/v1", "name": "x"}}},
            errors.BadRequest,
            "cannot bind token to object of type apps/v1, Kind=Deployment",
        ),
        ("builder", {"spec": {"audiences": "vault"}}, errors.BadRequest, "spec.audiences must be a list of strings"),
        ("builder", [], errors.BadRequest, "must be a TokenRequest object"),
        ("builder", {"spec": {"expirationSeconds": "1h"}}, errors.BadRequest, "must be an integer number of seconds"),
    ],
)
def test_token_request_errors(sas: ServiceAccounts, name: str, body: Any, err: type[Exception], message: str) -> None:
    with pytest.raises(err) as e:
        sas.create_token("shop", name, body)
    assert message in str(e.value)
