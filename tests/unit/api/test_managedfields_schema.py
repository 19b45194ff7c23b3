"""Server-side apply follows the served schema's list and map markers, as structured-merge-diff does.

The markers themselves (``x-kubernetes-list-type``/``-list-map-keys``/``-map-type``, enums with
kube-openapi's description lines) are checked in the served documents, and the extractor that reads
them from the Go types is checked on a small ``types.go``.
"""

from __future__ import annotations

from typing import Any

from controlplane.api import managedfields as mf
from controlplane.api import openapi, openapi_markers_extract


def _props(name: str) -> dict[str, Any]:
    props: dict[str, Any] = openapi.schemas()[name]["properties"]
    return props


def test_served_schemas_carry_kubernetes_list_and_map_markers() -> None:
    ports = _props("io.k8s.api.core.v1.Container")["ports"]
    assert ports["x-kubernetes-list-type"] == "map"
    assert ports["x-kubernetes-list-map-keys"] == ["containerPort", "protocol"]
    svc_ports = _props("io.k8s.api.core.v1.ServiceSpec")["ports"]
    assert svc_ports["x-kubernetes-list-map-keys"] == ["port", "protocol"]
    assert _props("io.k8s.api.core.v1.ServiceSpec")["selector"]["x-kubernetes-map-type"] == "atomic"
    assert _props("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta")["finalizers"]["x-kubernetes-list-type"] == "set"
    assert openapi.schemas()["io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector"]["x-kubernetes-map-type"] == "atomic"
    assert _props("io.k8s.api.core.v1.PodSpec")["tolerations"]["x-kubernetes-list-type"] == "atomic"
    # pointer structs have no default (kube-openapi defaults only non-pointer structs to {})
    assert "default" not in _props("io.k8s.api.core.v1.PodSpec")["securityContext"]
    assert _props("io.k8s.api.apps.v1.DeploymentSpec")["template"]["default"] == {}


def test_enums_carry_kubernetes_possible_values_lines() -> None:
    svc_type = _props("io.k8s.api.core.v1.ServiceSpec")["type"]
    assert svc_type["enum"] == ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"]
    assert (
        '\n\nPossible enum values:\n - `"ClusterIP"` means a service will only be accessible'
        in (svc_type["description"])
    )
    pull = _props("io.k8s.api.core.v1.Container")["imagePullPolicy"]
    assert pull["enum"] == ["Always", "IfNotPresent", "Never"]
    restart = _props("io.k8s.api.core.v1.PodSpec")["restartPolicy"]
    assert restart["description"].endswith('Possible enum values:\n - `"Always"`\n - `"Never"`\n - `"OnFailure"`')
    assert _props("io.k8s.api.core.v1.ContainerPort")["protocol"]["enum"] == ["SCTP", "TCP", "UDP"]


def _service(ports: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"ports": ports, **spec}}


def test_service_ports_are_keyed_by_port_and_protocol_and_the_selector_is_atomic() -> None:
    fs = mf.field_set(_service([{"port": 53}, {"port": 53, "protocol": "UDP"}], selector={"app": "dns"}))
    ports = fs["f:spec"]["f:ports"]
    assert set(ports) == {'k:{"port":53,"protocol":"TCP"}', 'k:{"port":53,"protocol":"UDP"}'}
    assert fs["f:spec"]["f:selector"] == {}


def test_atomic_lists_and_keyed_mounts_in_a_pod() -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p"},
        "spec": {
            "tolerations": [{"key": "k", "operator": "Exists"}],
            "containers": [{"name": "c", "volumeMounts": [{"name": "v", "mountPath": "/data"}], "args": ["a"]}],
        },
    }
    fs = mf.field_set(pod)
    assert fs["f:spec"]["f:tolerations"] == {}
    c = fs["f:spec"]["f:containers"]['k:{"name":"c"}']
    assert list(c["f:volumeMounts"]) == ['k:{"mountPath":"/data"}']
    assert c["f:args"] == {}


def test_two_appliers_merge_service_ports_by_key() -> None:
    live, entries = mf.apply([], None, _service([{"port": 80}]), manager="a", api_version="v1", force=False)
    live, entries = mf.apply(entries, live, _service([{"port": 443}]), manager="b", api_version="v1", force=False)
    assert [p["port"] for p in live["spec"]["ports"]] == [80, 443]
    # "a" stops applying its port: it goes, "b"'s stays
    dropped = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"type": "ClusterIP"}}
    live, entries = mf.apply(entries, live, dropped, manager="a", api_version="v1", force=False)
    assert [p["port"] for p in live["spec"]["ports"]] == [443]


def test_deployment_conditions_merge_by_type() -> None:
    status = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d"},
        "status": {"conditions": [{"type": "Available", "status": "True"}]},
    }
    fs = mf.field_set(status)
    assert list(fs["f:status"]["f:conditions"]) == ['k:{"type":"Available"}']


def test_kinds_without_a_schema_are_deduced() -> None:
    obj = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w", "finalizers": ["x/y"]},
        "spec": {"items": [{"name": "a"}], "labels": {"k": "v"}},
    }
    fs = mf.field_set(obj)
    assert fs["f:spec"]["f:items"] == {}  # lists are atomic
    assert fs["f:spec"]["f:labels"] == {"f:k": {}}  # maps are granular
    assert fs["f:metadata"]["f:finalizers"] == {'v:"x/y"': {}}  # metadata is still ObjectMeta


GO = """
// +enum
type Mode string

const (
	// ModeFast goes fast.
	ModeFast Mode = "Fast"
	// ModeSlow goes
	// slowly.
	ModeSlow Mode = "Slow"
	// ModeOff is off.
	ModeOff = Mode("Off")
)

// Thing is a thing.
// +structType=atomic
type Thing struct {
	// items of the thing.
	// +listType=map
	// +listMapKey=name
	// +listMapKey=port
	Items []Item `json:"items,omitempty"`
	// +optional
	Mode *Mode `json:"mode,omitempty"`
	Other Item `json:"other"`
}
"""


def test_markers_extractor_reads_go_comment_tags(tmp_path: Any) -> None:
    api = tmp_path / "api"
    (api / "core" / "v1").mkdir(parents=True)
    (api / "core" / "v1" / "types.go").write_text(GO)
    (tmp_path / "apimachinery" / "pkg" / "apis" / "meta" / "v1").mkdir(parents=True)
    out = openapi_markers_extract.extract(api, tmp_path / "apimachinery")
    thing = out["fields"]["io.k8s.api.core.v1.Thing"]
    assert thing["items"] == {"listType": "map", "listMapKeys": ["name", "port"]}
    assert thing["mode"]["enum"] == ["Fast", "Off", "Slow"] and thing["mode"]["pointer"] is True
    assert thing["mode"]["enumLines"] == [' - `"Fast"` goes fast.', ' - `"Off"` is off.', ' - `"Slow"` goes slowly.']
    assert thing["other"] == {"omitempty": False}
    assert out["types"]["io.k8s.api.core.v1.Thing"] == {"mapType": "atomic"}
