"""oci.py: Kubernetes' process rules, env, service variables, resources and security → OCI config."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from noded.runtime import oci

IMAGE = {
    "config": {
        "Entrypoint": ["/pause"],
        "Cmd": ["httpd", "-p", "8080"],
        "Env": ["PATH=/bin", "A=img"],
        "WorkingDir": "/www",
    }
}


@pytest.mark.parametrize(
    ("container", "argv"),
    [
        ({}, ["/pause", "httpd", "-p", "8080"]),
        ({"args": ["sleep", "1"]}, ["/pause", "sleep", "1"]),
        ({"command": ["sh"]}, ["sh"]),
        ({"command": ["sh"], "args": ["-c", "echo $(A) $(NOPE) $$(A)"]}, ["sh", "-c", "echo img $(NOPE) $(A)"]),
    ],
)
def test_command_and_args_follow_kubernetes_rules(container: dict[str, Any], argv: list[str]) -> None:
    got, wd = oci.resolve_process({"name": "c", **container}, IMAGE, ["A=img"])
    assert got == argv and wd == "/www"


def test_no_command_anywhere_is_a_clear_error() -> None:
    with pytest.raises(oci.SpecError, match="no command specified"):
        oci.resolve_process({"name": "c"}, {"config": {}}, [])


def test_env_order_field_refs_and_secret_refs() -> None:
    pod = {
        "metadata": {"name": "web", "namespace": "shop", "uid": "u1", "labels": {"app": "w"}},
        "spec": {"nodeName": "n1"},
        "status": {"podIP": "10.244.1.2"},
    }
    c = {
        "env": [
            {"name": "A", "value": "pod"},
            {"name": "B", "value": "$(A)-x"},
            {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
        ],
        "resources": {"limits": {"memory": "64Mi"}},
    }
    env = dict(
        kv.split("=", 1)
        for kv in oci.resolve_env(
            pod, c, ["A=img", "PATH=/bin"], {"X_SERVICE_HOST": "1.2.3.4"}, {("secret", "s", "pw"): "hunter2"}
        )
    )
    assert env["A"] == "pod" and env["B"] == "pod-x" and env["ME"] == "web" and env["APP"] == "w"
    assert env["IP"] == "10.244.1.2" and env["PW"] == "hunter2" and env["MEM"] == "64"
    assert env["X_SERVICE_HOST"] == "1.2.3.4" and env["PATH"] == "/bin"
    with pytest.raises(oci.SpecError, match="has no key"):
        oci.resolve_env(
            pod, {"env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "s", "key": "x"}}}]}, [], {}, {}
        )


def test_service_env_vars() -> None:
    svcs = [
        {
            "metadata": {"name": "redis-primary", "namespace": "shop"},
            "spec": {"clusterIP": "10.96.0.11", "ports": [{"name": "redis", "port": 6379, "protocol": "TCP"}]},
        },
        {
            "metadata": {"name": "kubernetes", "namespace": "default"},
            "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]},
        },
        {
            "metadata": {"name": "other", "namespace": "elsewhere"},
            "spec": {"clusterIP": "10.96.0.12", "ports": [{"port": 80}]},
        },
        {"metadata": {"name": "headless", "namespace": "shop"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}},
    ]
    env = oci.service_env(svcs, "shop")
    assert env["REDIS_PRIMARY_SERVICE_HOST"] == "10.96.0.11"
    assert env["REDIS_PRIMARY_SERVICE_PORT"] == "6379"
    assert env["REDIS_PRIMARY_SERVICE_PORT_REDIS"] == "6379"
    assert env["REDIS_PRIMARY_PORT"] == "tcp://10.96.0.11:6379"
    assert env["REDIS_PRIMARY_PORT_6379_TCP_ADDR"] == "10.96.0.11"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert not any(k.startswith(("OTHER_", "HEADLESS_")) for k in env)


@pytest.mark.parametrize(
    ("q", "v"),
    [("128Mi", 134217728), ("500m", Decimal("0.5")), ("1G", 10**9), ("2", 2), ("1.5Gi", 1610612736), ("1e3", 1000)],
)
def test_quantities(q: str, v: Any) -> None:
    assert oci.parse_quantity(q) == v


def test_container_config_resources_security_and_namespaces() -> None:
    pod = {"spec": {"securityContext": {"runAsUser": 1000, "fsGroup": 2000}}}
    c = {
        "name": "c",
        "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "500m", "memory": "64Mi"}},
        "securityContext": {
            "runAsGroup": 3000,
            "readOnlyRootFilesystem": True,
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["KILL"]},
        },
    }
    cfg = oci.build_config(
        kind="container",
        argv=["sh"],
        env=["A=1"],
        cwd="/",
        rootfs="/r",
        netns_path="/var/run/netns/p",
        annotations={"k": "v"},
        cgroups_path="/kubelab/x/c",
        sandbox_pid=42,
        pod=pod,
        container=c,
        mounts=[("/h", "/etc/hosts", False)],
    )
    assert cfg["process"]["user"] == {"uid": 1000, "gid": 3000, "additionalGids": [2000]}
    assert cfg["root"] == {"path": "/r", "readonly": True}
    caps = cfg["process"]["capabilities"]["bounding"]
    assert "CAP_NET_ADMIN" in caps and "CAP_KILL" not in caps and "CAP_SYS_ADMIN" not in caps
    res = cfg["linux"]["resources"]
    assert res["memory"]["limit"] == 64 * 2**20 and res["cpu"] == {"shares": 256, "quota": 50000, "period": 100000}
    ns = {n["type"]: n.get("path") for n in cfg["linux"]["namespaces"]}
    assert ns == {
        "pid": None,
        "mount": None,
        "network": "/var/run/netns/p",
        "ipc": "/proc/42/ns/ipc",
        "uts": "/proc/42/ns/uts",
    }
    assert "hostname" not in cfg  # it comes from the sandbox's UTS namespace
    assert {"destination": "/etc/hosts", "type": "bind", "source": "/h", "options": ["rbind", "rprivate", "rw"]} in cfg[
        "mounts"
    ]
    assert "rlimits" not in cfg["process"]
    assert cfg["annotations"] == {"k": "v"}


def test_privileged_and_sandbox_configs() -> None:
    cfg = oci.build_config(
        kind="container",
        argv=["sh"],
        env=[],
        cwd="/",
        rootfs="/r",
        netns_path="/n",
        annotations={},
        cgroups_path="/x",
        sandbox_pid=1,
        container={"securityContext": {"privileged": True}},
    )
    assert "CAP_SYS_ADMIN" in cfg["process"]["capabilities"]["bounding"]
    assert "maskedPaths" not in cfg["linux"] and cfg["linux"]["resources"]["devices"][0]["allow"] is True
    sb = oci.build_config(
        kind="sandbox",
        argv=["/pause"],
        env=[],
        cwd="/",
        rootfs="/p",
        netns_path="/n",
        annotations={},
        cgroups_path="/x",
        hostname="web",
    )
    assert sb["hostname"] == "web" and sb["root"]["readonly"] is True
    assert {n["type"] for n in sb["linux"]["namespaces"]} == {"pid", "ipc", "uts", "mount", "network"}
    with pytest.raises(oci.SpecError):
        oci.build_config(
            kind="container",
            argv=["sh"],
            env=[],
            cwd="/",
            rootfs="/r",
            netns_path="/n",
            annotations={},
            cgroups_path="/x",
        )
