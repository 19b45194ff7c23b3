"""Credential lookup from imagePullSecrets, by Kubernetes' keyring rules (no registry needed)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from noded.images.credentials import (
    AuthConfig,
    CredentialError,
    DockerKeyring,
    PullSecrets,
    authfile,
    is_docker_hub,
    keyring_from_secrets,
)


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def entry(user: str, password: str) -> dict[str, str]:
    return {"username": user, "password": password, "auth": b64(f"{user}:{password}")}


def ring(**entries: Any) -> DockerKeyring:
    r = DockerKeyring()
    r.add(entries)
    return r


def users(creds: list[AuthConfig]) -> list[str]:
    return [c.username for c in creds]


def docker_secret(name: str, auths: dict[str, Any], type_: str = "kubernetes.io/dockerconfigjson") -> dict[str, Any]:
    key = ".dockerconfigjson" if type_.endswith("dockerconfigjson") else ".dockercfg"
    doc = {"auths": auths} if key == ".dockerconfigjson" else auths
    return {"metadata": {"name": name}, "type": type_, "data": {key: b64(json.dumps(doc))}}


def test_host_port_key_matches_only_that_port() -> None:
    r = DockerKeyring()
    r.add({"127.0.0.1:5000": entry("five", "p5"), "127.0.0.1": entry("none", "p0")})
    assert users(r.lookup("127.0.0.1:5000/team/app:v1")) == ["five"]
    assert users(r.lookup("127.0.0.1/team/app")) == ["none"]
    assert r.lookup("127.0.0.1:5001/team/app") == []


def test_scheme_and_v1_v2_paths_mean_the_whole_host() -> None:
    r = DockerKeyring()
    r.add({"https://reg.example.com/v2/": entry("a", "1"), "http://other.example.com/v1/": entry("b", "2")})
    assert users(r.lookup("reg.example.com/x/y:latest")) == ["a"]
    assert users(r.lookup("other.example.com/z@sha256:" + "0" * 64)) == ["b"]


def test_path_prefix_and_most_specific_first() -> None:
    r = DockerKeyring()
    r.add({"quay.io": entry("any", "1"), "quay.io/coreos": entry("coreos", "2")})
    assert users(r.lookup("quay.io/coreos/etcd:v3")) == ["coreos", "any"]
    assert users(r.lookup("quay.io/other/x")) == ["any"]


def test_glob_in_host_parts() -> None:
    r = ring(**{"*.example.com": entry("g", "1")})
    assert users(r.lookup("eu.example.com/app")) == ["g"]
    assert r.lookup("example.com/app") == []  # part counts differ
    assert r.lookup("a.b.example.com/app") == []


def test_docker_hub_aliases() -> None:
    # The classic key written by `docker login` / `kubectl create secret docker-registry` defaults.
    r = ring(**{"https://index.docker.io/v1/": entry("hub", "1")})
    for image in ("docker.io/library/busybox:latest", "docker.io/me/app", "index.docker.io/me/app"):
        assert users(r.lookup(image)) == ["hub"], image
    assert r.lookup("quay.io/me/app") == []
    # A key written as docker.io matches docker.io names directly.
    assert users(ring(**{"docker.io": entry("d", "1")}).lookup("docker.io/library/x")) == ["d"]


def test_is_docker_hub() -> None:
    assert is_docker_hub("busybox") and is_docker_hub("me/app") and is_docker_hub("docker.io/x/y")
    assert not is_docker_hub("localhost/app") and not is_docker_hub("reg:5000/app")
    assert not is_docker_hub("reg.example.com/app")


def test_auth_field_wins_and_bad_auth_is_an_error_without_secret_data() -> None:
    r = ring(reg={"username": "ignored", "password": "x", "auth": b64("real:s3cret")})
    (cred,) = r.lookup("reg/app")
    assert (cred.username, cred.password) == ("real", "s3cret")
    assert "s3cret" not in repr(cred)
    with pytest.raises(CredentialError) as info:
        ring(reg={"auth": "!!not-base64!!"})
    assert "not-base64" not in str(info.value)
    with pytest.raises(CredentialError):
        ring(reg={"auth": b64("no-colon")})


def test_keyring_from_secrets_both_types_in_order_and_skips_others() -> None:
    secrets = [
        docker_secret("one", {"reg:5000": entry("first", "1")}),
        docker_secret("old", {"reg:5000": entry("second", "2")}, type_="kubernetes.io/dockercfg"),
        {"metadata": {"name": "opaque"}, "type": "Opaque", "data": {".dockerconfigjson": b64("{}")}},
        {"metadata": {"name": "empty"}, "type": "kubernetes.io/dockerconfigjson", "data": {}},
    ]
    assert users(keyring_from_secrets(secrets).lookup("reg:5000/app")) == ["first", "second"]


def test_unreadable_secret_names_the_secret() -> None:
    bad = {
        "metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": "%%%"},
    }
    with pytest.raises(CredentialError, match='secret "regcred"'):
        keyring_from_secrets([bad])
    no_auths = {
        "metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64('{"x": 1}')},
    }
    with pytest.raises(CredentialError, match="auths"):
        keyring_from_secrets([no_auths])


def test_pull_secrets_are_read_lazily_once_and_missing_ones_are_skipped() -> None:
    calls: list[tuple[str, str, str]] = []
    objects = {("secret", "team", "regcred"): docker_secret("regcred", {"reg:5000": entry("u", "p")})}

    def getter(kind: str, ns: str, name: str) -> dict[str, Any] | None:
        calls.append((kind, ns, name))
        return objects.get((kind, ns, name))

    pod = {
        "metadata": {"name": "p", "namespace": "team"},
        "spec": {"imagePullSecrets": [{"name": "gone"}, {"name": "regcred"}], "containers": []},
    }
    told: list[str] = []
    ps = PullSecrets(pod, getter, told.append)
    assert calls == [] and list(ps.names) == ["gone", "regcred"]
    assert users(ps.keyring().lookup("reg:5000/app")) == ["u"]
    ps.keyring()
    assert calls == [("secret", "team", "gone"), ("secret", "team", "regcred")]
    assert ps.missing == ["gone"]
    assert told == ["Unable to retrieve some image pull secrets (gone); attempting to pull the image may not succeed."]
    # A pod without imagePullSecrets never calls the API.
    assert not PullSecrets({"metadata": {}, "spec": {}}, getter).keyring()


def test_authfile_document() -> None:
    doc = authfile("127.0.0.1:5000", AuthConfig("u", "p:w"))
    assert doc == {"auths": {"127.0.0.1:5000": {"auth": b64("u:p:w")}}}
