"""Registry mirrors (containerd's hosts.toml model): the pure endpoint planner, image name
normalisation, and the store pulling through a mirror with fallback (scripted skopeo, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from noded.images.mirrors import (
    Endpoint,
    MirrorConfigError,
    host_dirs,
    parse_hosts_toml,
    plan_endpoints,
)
from noded.images.platform import Platform
from noded.images.store import ImagePullError, ImageStore, InvalidImageName, parse_image_ref
from tests.unit.noded.test_image_pull import FakeSkopeo, image_blobs

MIRROR = "192.168.56.1:5000"
LAB_HOSTS = f"""server = "https://registry-1.docker.io"

[host."http://{MIRROR}"]
  capabilities = ["pull", "resolve"]
"""


def write_hosts(root: Path, registry: str, text: str) -> Path:
    d = root / registry
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts.toml").write_text(text)
    return d


@pytest.mark.parametrize(
    ("ref", "want"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:1.14.2", "docker.io/library/nginx:1.14.2"),
        ("library/busybox:1.28", "docker.io/library/busybox:1.28"),
        ("docker.io/nginx", "docker.io/library/nginx:latest"),
        ("bitnami/redis", "docker.io/bitnami/redis:latest"),
        ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
        ("k8s.gcr.io/pause:2.0", "k8s.gcr.io/pause:2.0"),
        ("localhost/app", "localhost/app:latest"),
        ("192.168.56.1:5000/kubelab/pause", "192.168.56.1:5000/kubelab/pause:latest"),
        ("busybox@sha256:" + "a" * 64, "docker.io/library/busybox@sha256:" + "a" * 64),
        ("busybox:1.36@sha256:" + "b" * 64, "docker.io/library/busybox:1.36@sha256:" + "b" * 64),
    ],
)
def test_image_names_normalise_as_kubernetes_does(ref: str, want: str) -> None:
    assert str(parse_image_ref(ref)) == want


@pytest.mark.parametrize("ref", ["", " nginx", "Nginx", "nginx@sha256:short", "/abs"])
def test_invalid_image_names_are_refused(ref: str) -> None:
    with pytest.raises(InvalidImageName):
        parse_image_ref(ref)


def test_no_config_dir_means_the_registry_itself() -> None:
    assert plan_endpoints("docker.io", None, pinned=False) == [Endpoint("docker.io")]
    assert plan_endpoints("quay.io", None, pinned=True) == [Endpoint("quay.io")]


def test_registry_without_a_directory_is_asked_directly(tmp_path: Path) -> None:
    write_hosts(tmp_path, "docker.io", LAB_HOSTS)
    assert plan_endpoints("quay.io", tmp_path, pinned=False) == [Endpoint("quay.io")]


def test_mirror_first_then_the_upstream_server(tmp_path: Path) -> None:
    write_hosts(tmp_path, "docker.io", LAB_HOSTS)
    plan = plan_endpoints("docker.io", tmp_path, pinned=False)
    assert [(e.url(), e.mirror, e.tls_verify) for e in plan] == [
        (f"http://{MIRROR}", True, False),
        ("https://registry-1.docker.io", False, True),
    ]


def test_hosts_are_tried_in_file_order(tmp_path: Path) -> None:
    write_hosts(
        tmp_path,
        "registry.k8s.io",
        '[host."https://b.example"]\n[host."https://a.example:8443"]\nskip_verify = true\n[host."c.example"]\n',
    )
    plan = plan_endpoints("registry.k8s.io", tmp_path, pinned=False)
    assert [e.host for e in plan] == ["b.example", "a.example:8443", "c.example", "registry.k8s.io"]
    assert [e.tls_verify for e in plan] == [True, False, True, True]  # a bare host means https


def test_default_server_is_docker_hubs_api_host(tmp_path: Path) -> None:
    write_hosts(tmp_path, "docker.io", f'[host."http://{MIRROR}"]\n')
    assert [e.url() for e in plan_endpoints("docker.io", tmp_path, pinned=False)] == [
        f"http://{MIRROR}",
        "https://registry-1.docker.io",
    ]


def test_capabilities_filter_tags_and_digests(tmp_path: Path) -> None:
    write_hosts(
        tmp_path,
        "docker.io",
        'server = "https://registry-1.docker.io"\n'
        '[host."https://pull-only.example"]\ncapabilities = ["pull"]\n'
        '[host."https://both.example"]\ncapabilities = ["pull", "resolve"]\n'
        '[host."https://push-only.example"]\ncapabilities = ["push"]\n',
    )
    tag = [e.host for e in plan_endpoints("docker.io", tmp_path, pinned=False)]
    digest = [e.host for e in plan_endpoints("docker.io", tmp_path, pinned=True)]
    assert tag == ["both.example", "registry-1.docker.io"]
    assert digest == ["pull-only.example", "both.example", "registry-1.docker.io"]


def test_server_can_be_restricted_so_only_the_mirror_is_used(tmp_path: Path) -> None:
    write_hosts(
        tmp_path, "docker.io", f'server = "https://registry-1.docker.io"\ncapabilities = []\n[host."http://{MIRROR}"]\n'
    )
    assert [e.host for e in plan_endpoints("docker.io", tmp_path, pinned=False)] == [MIRROR]


def test_port_directory_forms_and_default(tmp_path: Path) -> None:
    assert [p.name for p in host_dirs(tmp_path, "reg.example:5000")] == [
        "reg.example_5000_",
        "reg.example:5000",
        "_default",
    ]
    write_hosts(tmp_path, "_default", '[host."https://catch-all.example"]\n')
    assert [e.host for e in plan_endpoints("ghcr.io", tmp_path, pinned=False)] == ["catch-all.example", "ghcr.io"]
    write_hosts(tmp_path, "reg.example_5000_", '[host."https://underscored.example"]\n')
    write_hosts(tmp_path, "reg.example:5000", '[host."https://colon.example"]\n')
    assert [e.host for e in plan_endpoints("reg.example:5000", tmp_path, pinned=False)] == [
        "underscored.example",
        "reg.example:5000",
    ]


def test_directory_without_hosts_toml_means_the_registry_itself(tmp_path: Path) -> None:
    (tmp_path / "docker.io").mkdir()  # a Docker-style certs dir: no mirrors
    write_hosts(tmp_path, "_default", '[host."https://catch-all.example"]\n')
    assert plan_endpoints("docker.io", tmp_path, pinned=False) == [Endpoint("docker.io")]


def test_insecure_registry_flag_still_applies_to_an_endpoint(tmp_path: Path) -> None:
    write_hosts(tmp_path, "docker.io", '[host."https://mirror.lab:5000"]\n')
    plan = plan_endpoints("docker.io", tmp_path, pinned=False, insecure=["mirror.lab:5000"])
    assert [(e.host, e.tls_verify) for e in plan] == [("mirror.lab:5000", False), ("registry-1.docker.io", True)]


def test_api_root_paths(tmp_path: Path) -> None:
    eps = parse_hosts_toml(
        '[host."https://a.example/v2"]\noverride_path = true\n'
        '[host."https://b.example/prefix"]\n'  # API root /prefix/v2: skopeo cannot, skipped
        '[host."https://c.example/"]\n',
        "docker.io",
    )
    assert [e.host for e in eps] == ["a.example", "c.example", "registry-1.docker.io"]


def test_ca_is_kept_as_a_list(tmp_path: Path) -> None:
    eps = parse_hosts_toml('[host."https://m.example"]\nca = "/etc/ca.pem"\n', "docker.io")
    assert eps[0].ca == ("/etc/ca.pem",)


@pytest.mark.parametrize(
    ("text", "msg"),
    [
        ("server = [", "hosts.toml"),
        ('[host."ftp://x"]\n', r"want http\(s\)"),
        ('[host."https://x"]\ncapabilities = ["fetch"]\n', "unknown capability 'fetch'"),
        ('[host."https://x"]\ncapabilities = "pull"\n', "capabilities must be a list"),
        ("server = 5\n", "server must be a URL"),
    ],
)
def test_bad_hosts_toml_is_an_error_naming_the_file(text: str, msg: str) -> None:
    with pytest.raises(MirrorConfigError, match=msg) as err:
        parse_hosts_toml(text, "docker.io", "certs.d/docker.io/hosts.toml")
    assert str(err.value).startswith("certs.d/docker.io/hosts.toml: ")


# ---- the store through a mirror --------------------------------------------------------------


class HostedSkopeo(FakeSkopeo):
    """FakeSkopeo where each registry host holds its own tags; unknown hosts are unreachable."""

    def __init__(self, hosts: dict[str, set[str]]) -> None:
        super().__init__()
        self.hosts = hosts  # host -> the "repo:tag"s it serves

    def run(self, argv, **kw):  # type: ignore[no-untyped-def]
        from noded.host.exec import CommandError

        src = next(a for a in argv if a.startswith("docker://"))[len("docker://") :]
        host, _, rest = src.partition("/")
        if host not in self.hosts:
            self.calls.append((list(argv), None, None))
            raise CommandError(list(argv), 1, f"pinging container registry {host}: connection refused")
        if argv[1] == "inspect" and "@" not in rest and rest not in self.hosts[host]:
            self.calls.append((list(argv), None, None))
            raise CommandError(list(argv), 1, f"reading manifest {rest} in {host}: manifest unknown")
        try:  # the in-memory registry knows repositories without a host; record the real argv
            return super().run([a.replace(src, rest) if a == "docker://" + src else a for a in argv], **kw)
        finally:
            self.calls[-1] = (list(argv), *self.calls[-1][1:])


def mirrored_store(tmp_path: Path, fake: FakeSkopeo) -> ImageStore:
    cfg = tmp_path / "certs.d"
    write_hosts(cfg, "docker.io", LAB_HOSTS)
    return ImageStore(tmp_path / "store", runner=fake, platform=Platform("linux", "amd64"), registry_config_path=cfg)


def test_pull_goes_to_the_mirror_and_keeps_the_upstream_name(tmp_path: Path) -> None:
    fake = HostedSkopeo({MIRROR: {"library/nginx:latest"}})
    manifest, blobs = image_blobs("nginx", "amd64")
    fake.push("library/nginx:latest", manifest, blobs)
    img = mirrored_store(tmp_path, fake).ensure("nginx")
    assert img.ref == "docker.io/library/nginx:latest"
    assert img.status_image_id.startswith("docker.io/library/nginx@sha256:")
    argvs = [c[0] for c in fake.calls]
    assert argvs[0][:3] == ["skopeo", "inspect", "--raw"]
    assert "--tls-verify=false" in argvs[0]  # http:// mirror
    assert argvs[0][-1] == f"docker://{MIRROR}/library/nginx:latest"
    assert argvs[1][-2].startswith(f"docker://{MIRROR}/library/nginx@sha256:")
    assert "--src-tls-verify=false" in argvs[1]
    assert len(argvs) == 2  # the upstream was never asked


def test_mirror_miss_falls_back_to_the_upstream_server(tmp_path: Path) -> None:
    fake = HostedSkopeo({MIRROR: set(), "registry-1.docker.io": {"library/redis:7"}})
    manifest, blobs = image_blobs("redis", "amd64")
    fake.push("library/redis:7", manifest, blobs)
    img = mirrored_store(tmp_path, fake).ensure("redis:7")
    assert img.ref == "docker.io/library/redis:7"
    hosts = [c[0][-1] if c[0][1] == "inspect" else c[0][-2] for c in fake.calls]
    assert hosts[0] == f"docker://{MIRROR}/library/redis:7"
    assert hosts[1] == "docker://registry-1.docker.io/library/redis:7"
    assert "--tls-verify=false" not in fake.calls[1][0]  # the real registry keeps TLS verification


def test_all_endpoints_failing_reports_the_upstream_error(tmp_path: Path) -> None:
    fake = HostedSkopeo({})
    with pytest.raises(ImagePullError, match=r"registry-1\.docker\.io"):
        mirrored_store(tmp_path, fake).ensure("nginx")
    assert len(fake.calls) == 2


def test_bad_config_is_a_pull_error(tmp_path: Path) -> None:
    cfg = tmp_path / "certs.d"
    write_hosts(cfg, "docker.io", "server = [")
    store = ImageStore(tmp_path / "store", runner=HostedSkopeo({}), registry_config_path=cfg)
    with pytest.raises(ImagePullError, match="registry config"):
        store.ensure("nginx")
