"""A real OCI registry for tests: Debian's ``docker-registry`` (distribution 2.8) on loopback.

``start_registry(tmp_path)`` writes a config with a filesystem store under ``tmp_path``, starts the
registry on ``127.0.0.1:<free port>`` (plain HTTP, so every client needs its insecure switch),
waits for ``/v2/`` and returns a ``Registry``; ``.stop()`` ends it by pid. ``.push(layout, repo)``
copies an OCI layout (tag ``latest``) into it with skopeo.

Token auth as Docker Hub does it: ``start_registry(tmp_path, auth=start_token_server(...))``
configures the registry's ``auth: token`` (realm, service, issuer, rootcertbundle) to trust that
``tests.helpers.tokenserver.TokenServer``; the ``Registry`` then owns it and ``.stop()`` stops both.
``.push(..., creds=(user, password))`` pushes through the token flow with an auth file;
``all_platforms=True`` pushes a whole image index (``skopeo copy --all``).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.helpers.tokenserver import TokenServer
from tests.helpers.wait import wait_for


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    address: str  # host:port
    process: subprocess.Popen[bytes]
    storage: Path
    token_server: TokenServer | None = None

    def push(
        self,
        oci_layout: str | Path,
        repository: str,
        *,
        tag: str = "latest",
        creds: tuple[str, str] | None = None,
        all_platforms: bool = False,
    ) -> str:
        """Push ``oci_layout:<tag>`` as ``<address>/<repository>``; return the full reference.

        ``creds`` go through a 0600 auth file (not the command line); ``all_platforms`` copies
        every manifest of an index, and the index itself."""
        ref = f"{self.address}/{repository}"
        with tempfile.TemporaryDirectory() as tmp:
            auth: list[str] = []
            if creds is not None:
                path = Path(tmp) / "auth.json"
                token = base64.b64encode(f"{creds[0]}:{creds[1]}".encode()).decode()
                path.write_text(json.dumps({"auths": {self.address: {"auth": token}}}))
                path.chmod(0o600)
                auth = ["--dest-authfile", str(path)]
            res = subprocess.run(
                [
                    "skopeo",
                    "copy",
                    "--quiet",
                    "--dest-tls-verify=false",
                    *auth,
                    *(["--all"] if all_platforms else []),
                    f"oci:{oci_layout}:{tag}",
                    f"docker://{ref}",
                ],
                capture_output=True,
                text=True,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        if res.returncode != 0:
            raise AssertionError(f"skopeo push of {oci_layout} to {ref} failed: {res.stderr}")
        return ref

    def stop(self) -> None:
        try:
            if self.process.poll() is None:
                os.kill(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(5)
                except subprocess.TimeoutExpired:
                    os.kill(self.process.pid, signal.SIGKILL)
                    self.process.wait(5)
        finally:
            if self.token_server is not None:
                self.token_server.stop()


def start_registry(tmp_path: Path, host: str = "127.0.0.1", *, auth: TokenServer | None = None) -> Registry:
    """Start a registry; with ``auth`` it demands bearer tokens from that server (and owns it)."""
    root = tmp_path / "registry"
    storage = root / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    port = free_port(host)
    config = root / "config.yml"
    auth_config = ""
    if auth is not None:
        auth_config = (
            "auth:\n  token:\n"
            f"    realm: {auth.realm}\n"
            f"    service: {auth.service}\n"
            f"    issuer: {auth.issuer}\n"
            f"    rootcertbundle: {auth.cert_path}\n"
        )
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {storage}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {host}:{port}\n" + auth_config
    )
    log = open(root / "registry.log", "wb")  # noqa: SIM115 - owned by the child process
    try:
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    except BaseException:
        if auth is not None:
            auth.stop()
        raise
    finally:
        log.close()
    reg = Registry(address=f"{host}:{port}", process=proc, storage=storage, token_server=auth)
    # With token auth an anonymous /v2/ is a 401 carrying the challenge: that is "up" too.
    ready = (200, 401) if auth is not None else (200,)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"registry exited: {(root / 'registry.log').read_text()}")
        try:
            return httpx.get(f"http://{reg.address}/v2/", timeout=1).status_code in ready
        except httpx.TransportError:
            return False

    try:
        wait_for(up, timeout=15, message="registry /v2/")
    except BaseException:
        reg.stop()
        raise
    return reg


def build_multiarch_layout(base: Path, dest: Path, arches: tuple[str, ...] = ("amd64", "arm64")) -> dict[str, str]:
    """A two-platform image: copy the OCI layout ``base`` (tag ``latest``) to ``dest`` and make
    ``dest:latest`` an OCI image index with one image per architecture, each ``base`` plus a layer
    holding ``/marker`` with the architecture's name (umoci writes gzip layers). Returns the
    manifest digest per architecture and the index's digest under ``"index"``.

    The arm64 image cannot run here, which is the point: a puller that picks it fails the test.
    """
    import hashlib
    import shutil

    def umoci(*args: str) -> None:
        res = subprocess.run(["umoci", *args], capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
        if res.returncode != 0:
            raise AssertionError(f"umoci {' '.join(args)} failed: {res.stderr}")

    shutil.copytree(base, dest, symlinks=True)
    (dest / ".kubelab-hash").unlink(missing_ok=True)
    for arch in arches:
        bundle = dest.parent / f"{dest.name}-bundle-{arch}"
        umoci("unpack", "--image", f"{dest}:latest", str(bundle))
        (bundle / "rootfs" / "marker").write_text(f"{arch}\n")
        umoci("repack", "--image", f"{dest}:{arch}", str(bundle))
        shutil.rmtree(bundle)
        umoci("config", "--image", f"{dest}:{arch}", "--os", "linux", "--architecture", arch)
    index_path = dest / "index.json"
    layout_index = json.loads(index_path.read_text())
    by_tag = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in layout_index["manifests"]}
    entries = []
    digests: dict[str, str] = {}
    for arch in arches:
        desc = {k: v for k, v in by_tag[arch].items() if k != "annotations"}
        desc["platform"] = {"os": "linux", "architecture": arch, **({"variant": "v8"} if arch == "arm64" else {})}
        entries.append(desc)
        digests[arch] = desc["digest"]
    index = json.dumps(
        {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": entries}
    ).encode()
    index_hex = hashlib.sha256(index).hexdigest()
    (dest / "blobs" / "sha256" / index_hex).write_bytes(index)
    layout_index["manifests"] = [
        {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": f"sha256:{index_hex}",
            "size": len(index),
            "annotations": {"org.opencontainers.image.ref.name": "latest"},
        }
    ]
    index_path.write_text(json.dumps(layout_index))
    digests["index"] = f"sha256:{index_hex}"
    return digests
