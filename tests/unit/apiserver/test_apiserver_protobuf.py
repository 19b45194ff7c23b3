"""Decoding the protobuf bodies real kubectl 1.33 sends (captured from `kubectl create ...`)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from controlplane.api import errors
from controlplane.apiserver import protobuf

# (command, captured body, what `kubectl create ... --dry-run=client -o json` printed, empties pruned)
CAPTURED: list[tuple[str, str, dict[str, Any]]] = [
    (
        "create ns ns1",
        ("azhzAAoPCgJ2MRIJTmFtZXNwYWNlEhsKEwoDbnMxEgAaACIAKgAyADgAQgASABoCCgAaACIA"),
        {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": "ns1"}},
    ),
    (
        "create configmap cm1 --from-literal=a=b --from-literal=c=d",
        ("azhzAAoPCgJ2MRIJQ29uZmlnTWFwEiUKEwoDY20xEgAaACIAKgAyADgAQgASBgoBYRIBYhIGCgFjEgFkGgAiAA=="),
        {"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "cm1"}, "data": {"a": "b", "c": "d"}},
    ),
    (
        "create secret generic s1 --from-literal=x=y",
        ("azhzAAoMCgJ2MRIGU2VjcmV0Eh4KEgoCczESABoAIgAqADIAOABCABIGCgF4EgF5GgAaACIA"),
        {"kind": "Secret", "apiVersion": "v1", "metadata": {"name": "s1"}, "data": {"x": "eQ=="}},
    ),
    (
        "create deployment d1 --image=nginx --port=80 --replicas=2",
        (
            "azhzAAoVCgdhcHBzL3YxEgpEZXBsb3ltZW50ErQBCh0KAmQxEgAaACIAKgAyADgAQgBaCQoDYXBwEgJkMRKEAQgCEgsKCQoD"
            "YXBwEgJkMRprChsKABIAGgAiACoAMgA4AEIAWgkKA2FwcBICZDESTBIuCgVuZ2lueBIFbmdpbngqADIKCgAQABhQIgAqAEIA"
            "agByAIABAIgBAJABAKIBABoAMgBCAEoAUgBYAGAAaACCAQCKAQCaAQDCAQAiAgoAKAA4ABoMCAAQABgAIAAoADgAGgAiAA=="
        ),
        {
            "kind": "Deployment",
            "apiVersion": "apps/v1",
            "metadata": {"name": "d1", "labels": {"app": "d1"}},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "d1"}},
                "template": {
                    "metadata": {"labels": {"app": "d1"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx", "ports": [{"containerPort": 80}]}]},
                },
            },
        },
    ),
    (
        "create service clusterip svc1 --tcp=80:8080",
        (
            "azhzAAoNCgJ2MRIHU2VydmljZRJsCiEKBHN2YzESABoAIgAqADIAOABCAFoLCgNhcHASBHN2YzESQwobCgc4MC04MDgwEgNU"
            "Q1AYUCIHCAAQkD8aACgAEgsKA2FwcBIEc3ZjMRoAIglDbHVzdGVySVA6AEIAUgBaAGAAaAAaAgoAGgAiAA=="
        ),
        {
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": {"name": "svc1", "labels": {"app": "svc1"}},
            "spec": {
                "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                "selector": {"app": "svc1"},
                "type": "ClusterIP",
            },
        },
    ),
    (
        "create service nodeport np1 --tcp=80:8080 --node-port=30123",
        (
            "azhzAAoNCgJ2MRIHU2VydmljZRJqCh8KA25wMRIAGgAiACoAMgA4AEIAWgoKA2FwcBIDbnAxEkMKHQoHODAtODA4MBIDVENQ"
            "GFAiBwgAEJA/GgAoq+sBEgoKA2FwcBIDbnAxGgAiCE5vZGVQb3J0OgBCAFIAWgBgAGgAGgIKABoAIgA="
        ),
        {
            "kind": "Service",
            "apiVersion": "v1",
            "metadata": {"name": "np1", "labels": {"app": "np1"}},
            "spec": {
                "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080, "nodePort": 30123}],
                "selector": {"app": "np1"},
                "type": "NodePort",
            },
        },
    ),
    (
        "create serviceaccount sa1",
        ("azhzAAoUCgJ2MRIOU2VydmljZUFjY291bnQSFQoTCgNzYTESABoAIgAqADIAOABCABoAIgA="),
        {"kind": "ServiceAccount", "apiVersion": "v1", "metadata": {"name": "sa1"}},
    ),
    (
        "create job j1 --image=busybox -- echo hi",
        (
            "azhzAAoPCghiYXRjaC92MRIDSm9iEoQBChIKAmoxEgAaACIAKgAyADgAQgASZDJiChAKABIAGgAiACoAMgA4AEIAEk4SKwoC"
            "ajESB2J1c3lib3gaBGVjaG8aAmhpKgBCAGoAcgCAAQCIAQCQAQCiAQAaBU5ldmVyMgBCAEoAUgBYAGAAaACCAQCKAQCaAQDC"
            "AQAaCCAAKAAwADoAGgAiAA=="
        ),
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "j1"},
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "j1", "image": "busybox", "command": ["echo", "hi"]}],
                        "restartPolicy": "Never",
                    }
                }
            },
        },
    ),
]


@pytest.mark.parametrize(("command", "body", "expected"), CAPTURED, ids=[c[0] for c in CAPTURED])
def test_decodes_like_kubectl_json(command: str, body: str, expected: dict[str, Any]) -> None:
    assert protobuf.decode(base64.b64decode(body)) == expected


def test_pointer_zero_is_kept() -> None:
    # DeploymentSpec.replicas (field 1) = 0 must stay 0, not vanish (it would default to 1)
    raw = bytes([0x08, 0x00])
    assert protobuf.decode_message("DeploymentSpec", raw) == {"replicas": 0}


def test_negative_int() -> None:
    raw = bytes([0x08]) + b"\xff" * 9 + b"\x01"  # int32 -1 as a 10-byte varint
    assert protobuf.decode_message("DeleteOptions", raw) == {"gracePeriodSeconds": -1}


@pytest.mark.parametrize(
    ("body", "err"),
    [
        (b"not protobuf", errors.BadRequest),
        (protobuf.MAGIC + b"\x0a\x05\x0a\x02v1", errors.BadRequest),  # truncated
        (protobuf.MAGIC + b"\x0a\x0a\x0a\x02v1\x12\x04Node", errors.UnsupportedMediaType),  # no schema
    ],
)
def test_bad_bodies(body: bytes, err: type[errors.ApiError]) -> None:
    with pytest.raises(err):
        protobuf.decode(body)
