"""ImageStore's pull logic against a scripted skopeo (no registry, no root): which manifest of an
index is copied, digest pinning, credential attempts and the auth file's hygiene."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from noded.host.exec import CommandError, Completed
from noded.images.credentials import PullSecrets
from noded.images.platform import Platform
from noded.images.store import ImagePullError, ImageStore

REG = "reg.test:5000"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def image_blobs(marker: str, arch: str) -> tuple[bytes, dict[str, bytes]]:
    """A one-layer image whose layer holds /marker; returns (manifest bytes, blobs by digest)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("marker")
        info.size = len(marker)
        tar.addfile(info, io.BytesIO(marker.encode()))
    layer = gzip.compress(raw.getvalue())
    config = json.dumps(
        {
            "architecture": arch,
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [digest(raw.getvalue())]},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(layer),
                    "size": len(layer),
                }
            ],
        }
    ).encode()
    return manifest, {digest(config): config, digest(layer): layer}


class FakeSkopeo:
    """``skopeo inspect --raw`` / ``skopeo copy docker://REPO@DIGEST dir:D`` over an in-memory registry.

    ``users`` set: a request needs an auth file naming one of them (else 'unauthorized').
    Each call records argv and, if an auth file was given, its mode and content at that moment."""

    def __init__(self) -> None:
        self.tags: dict[str, bytes] = {}  # "repo:tag" -> manifest or index bytes
        self.manifests: dict[str, bytes] = {}  # digest -> bytes
        self.blobs: dict[str, bytes] = {}
        self.users: dict[str, str] = {}
        self.calls: list[tuple[list[str], int | None, dict[str, Any] | None]] = []

    def push(self, repo_tag: str, manifest: bytes, blobs: Mapping[str, bytes]) -> str:
        self.manifests[digest(manifest)] = manifest
        self.blobs.update(blobs)
        self.tags[repo_tag] = manifest
        return digest(manifest)

    def push_index(self, repo_tag: str, entries: Sequence[tuple[bytes, str]]) -> str:
        index = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": digest(m),
                        "size": len(m),
                        "platform": {"os": "linux", "architecture": arch},
                    }
                    for m, arch in entries
                ],
            }
        ).encode()
        return self.push(repo_tag, index, {})

    def run(self, argv: Sequence[str], **_: Any) -> Completed:
        argv = list(argv)
        auth = None
        mode = None
        for flag in ("--authfile", "--src-authfile"):
            if flag in argv:
                path = argv[argv.index(flag) + 1]
                mode = stat.S_IMODE(os.stat(path).st_mode)
                auth = json.loads(Path(path).read_text())
        self.calls.append((argv, mode, auth))
        if self.users:
            ok = False
            for entry in (auth or {}).get("auths", {}).values():
                user, _sep, pw = base64.b64decode(entry["auth"]).decode().partition(":")
                ok = ok or self.users.get(user) == pw
            if not ok:
                raise CommandError(argv, 1, "reading manifest: unauthorized: authentication required")
        src = next(a for a in argv if a.startswith("docker://"))[len("docker://") :]
        if argv[1] == "inspect":
            if "@" in src:
                data = self.manifests.get(src.split("@", 1)[1])
            else:
                data = self.tags.get(src.removeprefix(REG + "/"))
            if data is None:
                raise CommandError(argv, 1, f'time="x" level=fatal msg="reading manifest {src}: manifest unknown"')
            return Completed(tuple(argv), 0, data, b"")
        assert argv[1] == "copy" and "@" in src, argv  # noded always copies by digest
        dest = Path(argv[-1].removeprefix("dir:"))
        dest.mkdir(parents=True)
        manifest = self.manifests[src.split("@", 1)[1]]
        (dest / "manifest.json").write_bytes(manifest)
        m = json.loads(manifest)
        for d in [m["config"]["digest"], *(layer["digest"] for layer in m["layers"])]:
            (dest / d.split(":", 1)[1]).write_bytes(self.blobs[d])
        return Completed(tuple(argv), 0, b"", b"")


def secret_getter(auths: dict[str, dict[str, str]]) -> Any:
    doc = base64.b64encode(json.dumps({"auths": auths}).encode()).decode()
    sec = {
        "metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": doc},
    }
    return lambda kind, ns, name: sec if (kind, name) == ("secret", "regcred") else None


POD = {"metadata": {"name": "p", "namespace": "default"}, "spec": {"imagePullSecrets": [{"name": "regcred"}]}}


def store(tmp_path: Path, fake: FakeSkopeo, arch: str = "amd64") -> ImageStore:
    return ImageStore(tmp_path / "store", runner=fake, insecure_registries=[REG], platform=Platform("linux", arch))


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_index_entry_for_the_platform_is_copied_by_digest(tmp_path: Path, arch: str) -> None:
    fake = FakeSkopeo()
    amd, amd_blobs = image_blobs("amd64", "amd64")
    arm, arm_blobs = image_blobs("arm64", "arm64")
    fake.blobs.update(amd_blobs | arm_blobs)
    fake.manifests.update({digest(amd): amd, digest(arm): arm})
    index_digest = fake.push_index("multi:latest", [(amd, "amd64"), (arm, "arm64")])
    s = store(tmp_path, fake, arch)
    img = s.ensure(f"{REG}/multi:latest")
    chosen = amd if arch == "amd64" else arm
    assert img.manifest_digest == digest(chosen)
    assert img.config["architecture"] == arch
    assert img.repo_digest == index_digest
    assert img.status_image_id == f"{REG}/multi@{index_digest}"
    assert img.image_id == json.loads(chosen)["config"]["digest"]
    assert (s.rootfs_layers(img)[0] / "marker").read_text() == arch
    copy = [c[0] for c in fake.calls if c[0][1] == "copy"]
    assert copy[0][-2] == f"docker://{REG}/multi@{digest(chosen)}"
    # The index is kept as a blob too, and GC's sweep keeps it while the image is there.
    s.gc(0, in_use=[img.ref])
    assert (tmp_path / "store" / "blobs" / "sha256" / index_digest.split(":")[1]).exists()


def test_no_entry_for_the_platform(tmp_path: Path) -> None:
    fake = FakeSkopeo()
    arm, arm_blobs = image_blobs("arm64", "arm64")
    fake.blobs.update(arm_blobs)
    fake.manifests[digest(arm)] = arm
    fake.push_index("armonly:v1", [(arm, "arm64")])
    with pytest.raises(ImagePullError, match=r"no match for platform linux/amd64.*linux/arm64"):
        store(tmp_path, fake).ensure(f"{REG}/armonly:v1")
    assert store(tmp_path, fake).list_images() == []


def test_pinned_digest_is_pulled_by_digest_and_checked(tmp_path: Path) -> None:
    fake = FakeSkopeo()
    m, blobs = image_blobs("x", "amd64")
    d = fake.push("app:v1", m, blobs)
    s = store(tmp_path, fake)
    img = s.ensure(f"{REG}/app:v1@{d}", "Always")
    assert img.manifest_digest == d and img.repo_digest == d
    inspect = next(c[0] for c in fake.calls if c[0][1] == "inspect")
    assert inspect[-1] == f"docker://{REG}/app@{d}"  # the tag is dropped, the digest counts
    # Always with a digest never asks the registry again.
    n = len(fake.calls)
    assert s.ensure(f"{REG}/app:v1@{d}", "Always").image_id == img.image_id
    assert len(fake.calls) == n
    # A registry answering a digest with other content is caught.
    wrong = "sha256:" + "1" * 64
    fake.manifests[wrong] = m
    with pytest.raises(ImagePullError, match="manifest digest mismatch"):
        s.ensure(f"{REG}/app@{wrong}")


def test_credentials_from_pull_secrets_go_through_a_private_authfile(tmp_path: Path) -> None:
    fake = FakeSkopeo()
    m, blobs = image_blobs("private", "amd64")
    fake.push("private/app:latest", m, blobs)
    fake.users = {"alice": "s3cret"}
    s = store(tmp_path, fake)
    # Without secrets: the registry's reason.
    with pytest.raises(ImagePullError, match="unauthorized: authentication required"):
        s.ensure(f"{REG}/private/app:latest")
    # A wrong credential first, then the right one: both tried, in order (kubelet does the same).
    getter = secret_getter(
        {
            f"{REG}/private": {"auth": base64.b64encode(b"alice:wrong").decode()},
            REG: {"username": "alice", "password": "s3cret"},
        }
    )
    fake.calls.clear()
    img = s.ensure(f"{REG}/private/app:latest", "IfNotPresent", PullSecrets(POD, getter))
    assert img.repository == f"{REG}/private/app"
    used = [(c[1], c[2]) for c in fake.calls]
    assert all(mode == 0o600 for mode, _ in used)
    passwords = [base64.b64decode(a["auths"][REG]["auth"]).decode() for _, a in used if a]
    assert passwords[0] == "alice:wrong" and passwords[-1] == "alice:s3cret"
    for argv, _, _ in fake.calls:
        assert not any("s3cret" in a for a in argv)
    # The auth files are gone.
    assert [p.name for p in (tmp_path / "store" / "tmp").iterdir()] == []


def test_secrets_not_read_when_the_image_is_present(tmp_path: Path) -> None:
    fake = FakeSkopeo()
    m, blobs = image_blobs("x", "amd64")
    fake.push("app:v1", m, blobs)
    s = store(tmp_path, fake)
    s.ensure(f"{REG}/app:v1")
    reads: list[str] = []
    s.ensure(f"{REG}/app:v1", "IfNotPresent", PullSecrets(POD, lambda k, ns, n: reads.append(n)))  # type: ignore[func-returns-value]
    assert reads == []


def test_unreadable_pull_secret_is_a_pull_error_naming_it(tmp_path: Path) -> None:
    fake = FakeSkopeo()
    bad = {
        "metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": "%%"},
    }
    with pytest.raises(ImagePullError, match='secret "regcred"'):
        store(tmp_path, fake).ensure(f"{REG}/app:v1", "IfNotPresent", PullSecrets(POD, lambda k, ns, n: bad))
    assert fake.calls == []


def test_pull_policies_follow_a_moved_tag(tmp_path: Path) -> None:
    fake = FakeSkopeo()
    one, b1 = image_blobs("one", "amd64")
    two, b2 = image_blobs("two", "amd64")
    fake.push("app:v1", one, b1)
    s = store(tmp_path, fake)
    s.resolve_ttl = 0
    first = s.ensure(f"{REG}/app:v1", "IfNotPresent")
    fake.push("app:v1", two, b2)  # the tag moves
    assert s.ensure(f"{REG}/app:v1", "IfNotPresent").image_id == first.image_id
    assert s.ensure(f"{REG}/app:v1", "Never").image_id == first.image_id
    moved = s.ensure(f"{REG}/app:v1", "Always")
    assert moved.image_id != first.image_id and moved.manifest_digest == digest(two)
    # Always with an unchanged tag only resolves (an inspect, no copy).
    fake.calls.clear()
    assert s.ensure(f"{REG}/app:v1", "Always").image_id == moved.image_id
    assert [c[0][1] for c in fake.calls] == ["inspect"]


def test_registry_reason_is_unescaped_from_skopeo_log_line() -> None:
    from noded.images.store import _pull_reason

    stderr = (
        'time="2026-11-23T22:57:59Z" level=fatal msg="Error parsing image name \\"docker://r:5000/p/b:latest\\": '
        "reading manifest latest in r:5000/p/b: errors:\\ndenied: requested access to the resource is denied\\n"
        'unauthorized: authentication required\\n"\n'
    )
    assert _pull_reason("r:5000/p/b:latest", stderr) == (
        'failed to pull and unpack image "r:5000/p/b:latest": reading manifest latest in r:5000/p/b: errors: '
        "denied: requested access to the resource is denied; unauthorized: authentication required"
    )
    assert _pull_reason("x", "") == 'failed to pull and unpack image "x": unknown error'
