"""``kubelab metrics-server``: the subcommand, its flags, and the objects it registers."""

from __future__ import annotations

import base64

import pytest

from controlplane.metricsserver.cli import registration_objects
from lab.cli import build_parser


def test_subcommand_and_defaults() -> None:
    args = build_parser().parse_args(["metrics-server", "--metric-resolution", "15s"])
    assert args.metric_resolution == 15.0 and args.secure_port == 4443
    assert build_parser().parse_args(["metrics-server"]).metric_resolution == 5.0  # the lab's
    with pytest.raises(SystemExit):
        build_parser().parse_args(["metrics-server", "--metric-resolution", "often"])


def test_registration_objects() -> None:
    objs = dict(registration_objects("192.168.56.10", 4443, b"PEM"))
    svc = objs["/api/v1/namespaces/kube-system/services"]
    assert "selector" not in svc["spec"] and svc["spec"]["ports"][0]["targetPort"] == 4443
    eps = objs["/api/v1/namespaces/kube-system/endpoints"]
    assert eps["subsets"] == [
        {"addresses": [{"ip": "192.168.56.10"}], "ports": [{"name": "https", "port": 4443, "protocol": "TCP"}]}
    ]
    api = objs["/apis/apiregistration.k8s.io/v1/apiservices"]
    assert api["metadata"]["name"] == "v1beta1.metrics.k8s.io"
    assert api["spec"]["service"] == {"namespace": "kube-system", "name": "metrics-server", "port": 443}
    assert base64.b64decode(api["spec"]["caBundle"]) == b"PEM"
