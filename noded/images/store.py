"""noded's image store: pull with skopeo, keep blobs by digest, unpack layers once, share them.

Role: ``ImageStore.ensure(ref, policy)`` makes an image present according to the pod's
``imagePullPolicy`` and returns its ``Image`` (config, layer chain, ids). ``rootfs_layers`` gives
the unpacked layer directories, which ``runtime`` stacks as overlayfs lowerdirs under a
per-container upper/work dir, so containers never copy an image.

Layout under ``<root>`` (content-addressed; every name is a digest):

    blobs/sha256/<hex>          compressed layer blobs, manifests and configs, verified on ingest
    layers/<diffid-hex>/fs      a layer unpacked once (overlayfs whiteouts), shared by all images
    images/<sha256(ref)>.json   {ref, manifest digest, config digest, layers, size, last_used}

Pulling goes over the real distribution protocol with skopeo, in two steps:
1. ``skopeo inspect --raw docker://REF`` fetches what the tag (or pinned digest) names; its sha256
   is the *repo digest* (checked against a pinned ``@sha256:`` reference). When it is a manifest
   list / OCI index, ``platform.choose_manifest`` picks the entry for this host;
2. ``skopeo copy docker://REPO@<platform manifest digest> dir:TMP`` fetches exactly that manifest
   and its blobs (by digest, so a tag moved in between cannot mix two images); the copied
   manifest's sha256 must equal the digest asked for.
Token auth (401 + ``WWW-Authenticate: Bearer realm=..`` → token endpoint → retry, as Docker Hub
does) and gzip layers are skopeo's job. Credentials come from the pod's ``imagePullSecrets``
(``credentials.PullSecrets``), matched to the image by kubelet's rules; each matching one is tried
in turn, written to a 0600 auth file under ``<root>/tmp`` that is removed right after (never on
a command line, never logged). Registries named with ``--insecure-registry`` get
``--src-tls-verify=false``. Every blob's sha256 is checked against its name before it enters
``blobs/``, and each layer's diff_id against the config's.

Mirrors (``mirrors.py``, containerd's ``hosts.toml`` model, ``--registry-config-path``): the
endpoints of the image's registry are tried in the planned order (mirrors, then the upstream
server), the whole two-step pull on one endpoint before moving to the next, so a manifest and its
blobs always come from the same place. The pod's credentials go only to the image's own registry
(kubelet's credentials name a registry; containerd's CRI hands them to that host alone); mirrors
are asked anonymously. Without a config directory the only endpoint is the registry itself.

Image identity, as Kubernetes reports it: ``Image.image_id`` is the config digest (what
``crictl images`` calls the image ID); ``Image.status_image_id`` is ``REPO@<repo digest>`` (the
index digest for a multi-platform image), which goes into a container status's ``imageID``.

Concurrency: one lock per reference serialises pulls of the same image; a store lock guards the
records and GC. Layer unpacking happens in a temp dir renamed into place, so a crash never
leaves a half-unpacked layer that looks complete.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from noded.host.exec import CommandError, CommandRunner, SubprocessRunner
from noded.images.credentials import AuthConfig, CredentialError, PullSecrets, authfile
from noded.images.mirrors import Endpoint, MirrorConfigError, plan_endpoints
from noded.images.platform import NoMatchingPlatform, Platform, choose_manifest
from noded.images.unpack import unpack_layer

log = logging.getLogger(__name__)
_T = TypeVar("_T")

DEFAULT_DOMAIN = "docker.io"
MEDIA_INDEXES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)


class ImageError(Exception):
    """Base of the image errors; ``reason`` is the Kubernetes waiting reason."""

    reason = "ErrImagePull"


class ImagePullError(ImageError):
    reason = "ErrImagePull"


class ImageNeverPullError(ImageError):
    reason = "ErrImageNeverPull"


class InvalidImageName(ImageError):
    reason = "InvalidImageName"


@dataclass(frozen=True)
class ImageRef:
    domain: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def registry(self) -> str:
        return self.domain

    @property
    def repository(self) -> str:
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        s = self.repository
        if self.tag:
            s += f":{self.tag}"
        if self.digest:
            s += f"@{self.digest}"
        return s

    def source(self) -> str:
        """What skopeo is given: a pinned digest alone (skopeo refuses tag and digest together,
        and the digest is what counts, as in containerd), else the tag."""
        return f"{self.repository}@{self.digest}" if self.digest else f"{self.repository}:{self.tag}"

    def at(self, host: str) -> str:
        """The same repository path on another registry host (a mirror), tag or digest kept."""
        return f"{host}/{self.path}@{self.digest}" if self.digest else f"{host}/{self.path}:{self.tag}"


def parse_image_ref(ref: str) -> ImageRef:
    """Normalise like Docker: ``busybox`` → ``docker.io/library/busybox:latest``."""
    if not ref or ref != ref.strip() or any(c.isspace() for c in ref) or ref.startswith("/"):
        raise InvalidImageName(f"invalid image name {ref!r}")
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
        if not digest.startswith("sha256:") or len(digest) != 71:
            raise InvalidImageName(f"invalid digest in image reference: {digest!r}")
    first, sep, rest = ref.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        domain, path = first, rest
    else:
        domain, path = DEFAULT_DOMAIN, ref
    tag = None
    if ":" in path.rsplit("/", 1)[-1]:
        path, tag = path.rsplit(":", 1)
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    if not path or path != path.lower():
        raise InvalidImageName(f"invalid image name {ref!r}: repository must be lowercase")
    if tag is None and digest is None:
        tag = "latest"
    return ImageRef(domain, path, tag, digest)


@dataclass
class Image:
    ref: str
    manifest_digest: str
    config_digest: str
    layers: list[str]  # compressed blob digests, bottom first
    diff_ids: list[str]  # uncompressed digests, bottom first
    config: dict[str, Any]
    size: int
    repo_digest: str = ""  # digest the registry resolved the tag to (index or manifest)
    last_used: float = 0.0
    names: list[str] = field(default_factory=list)
    repository: str = ""  # host/path it was pulled from; empty for an imported archive

    @property
    def image_id(self) -> str:
        return self.config_digest

    @property
    def status_image_id(self) -> str:
        """A container status's ``imageID``: ``repo@sha256:<repo digest>`` for a pulled image
        (containerd reports the first repo digest), the config digest for an imported one."""
        return f"{self.repository}@{self.repo_digest}" if self.repository and self.repo_digest else self.config_digest

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Image:
        return cls(**d)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def _auth_identity(auths: Sequence[AuthConfig | None]) -> str:
    """A hash naming a set of credentials (so a cache can tell them apart without holding them)."""
    return hashlib.sha256("\0".join(a.auth if a else "" for a in auths).encode()).hexdigest()


def _sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _diff_id(blob: Path) -> str:
    h = hashlib.sha256()
    with open(blob, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    opener = gzip.open if gz else open
    with opener(blob, "rb") as f:  # type: ignore[operator]
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return "sha256:" + h.hexdigest()


class ImageStore:
    def __init__(
        self,
        root: str | Path,
        *,
        runner: CommandRunner | None = None,
        insecure_registries: Iterable[str] = (),
        pull_timeout: float = 300.0,
        resolve_ttl: float = 5.0,
        platform: Platform | None = None,
        registry_config_path: str | Path | None = None,
    ) -> None:
        self.root = Path(root)
        self.registry_config_path = Path(registry_config_path) if registry_config_path else None
        self.runner = runner or SubprocessRunner()
        self.insecure = set(insecure_registries)
        self.pull_timeout = pull_timeout
        self.platform = platform  # None: this host's (``platform.host_platform``)
        for d in ("blobs/sha256", "layers", "images", "tmp"):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._ref_locks: dict[str, threading.Lock] = {}
        # (ref, credentials' hash) -> (digest, when resolved)
        self._resolved: dict[tuple[str, str], tuple[str, float]] = {}
        self.resolve_ttl = resolve_ttl

    # ---- records ---------------------------------------------------------------------------

    def _record_path(self, ref: str) -> Path:
        return self.root / "images" / (hashlib.sha256(ref.encode()).hexdigest() + ".json")

    def get(self, ref: str) -> Image | None:
        """The stored image for ``ref`` (normalised), or None."""
        try:
            norm = str(parse_image_ref(ref))
        except InvalidImageName:
            return None
        p = self._record_path(norm)
        try:
            return Image.from_json(json.loads(p.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def list_images(self) -> list[Image]:
        out = []
        for p in sorted((self.root / "images").glob("*.json")):
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
                out.append(Image.from_json(json.loads(p.read_text())))
        return out

    def _save(self, img: Image) -> None:
        p = self._record_path(img.ref)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(img.to_json()))
        os.replace(tmp, p)

    def touch(self, ref: str) -> None:
        img = self.get(ref)
        if img is not None:
            img.last_used = time.time()
            with self._lock:
                self._save(img)

    # ---- pulling ---------------------------------------------------------------------------

    def ensure(self, ref: str, policy: str = "IfNotPresent", secrets: PullSecrets | None = None) -> Image:
        """Make ``ref`` present per ``imagePullPolicy`` (Always / IfNotPresent / Never).

        ``secrets`` are the pod's ``imagePullSecrets``; they are read only when the registry is
        really asked (a present image with IfNotPresent costs no API call)."""
        parsed = parse_image_ref(ref)
        norm = str(parsed)
        with self._lock:
            lock = self._ref_locks.setdefault(norm, threading.Lock())
        with lock:
            have = self.get(norm)
            if policy == "Never":
                if have is None:
                    raise ImageNeverPullError(f'Container image "{ref}" is not present with pull policy of Never')
                return have
            if policy == "IfNotPresent" and have is not None:
                return have
            if policy == "Always" and have is not None and parsed.digest:
                return have  # a digest names immutable content: nothing to ask the registry
            auths = self._auth_attempts(parsed, secrets)
            if policy == "Always" and have is not None and have.repo_digest:
                # Resolve the tag (one manifest request); unchanged digest → nothing to pull. A
                # resolution younger than ``resolve_ttl`` is reused: a batch of pods with
                # ``:latest`` would otherwise pay one skopeo exec each (containerd's resolver
                # is a cheap HEAD; ours is a process), and a tag moved seconds ago is a race anyway.
                # It is reused only for the same credentials: a pod without the secret must not
                # ride on another pod's successful check of a private image.
                key = (norm, _auth_identity(auths))
                seen = self._resolved.get(key)
                if seen and seen[0] == have.repo_digest and time.monotonic() - seen[1] < self.resolve_ttl:
                    return have
                with contextlib.suppress(ImagePullError):
                    digest = self._each_endpoint(parsed, auths, lambda ep, af: self._resolve_digest(parsed, af, ep))
                    self._resolved[key] = (digest, time.monotonic())
                    if digest == have.repo_digest:
                        return have
            return self._each_endpoint(parsed, auths, lambda ep, af: self._pull(parsed, af, ep))

    def _auth_attempts(self, parsed: ImageRef, secrets: PullSecrets | None) -> list[AuthConfig | None]:
        """The credentials to try in turn (kubelet: every match from the pod's secrets; with
        none, one anonymous attempt, which still gets a token where the registry gives one)."""
        if secrets is None:
            return [None]
        try:
            found = secrets.keyring().lookup(str(parsed))
        except CredentialError as exc:
            raise ImagePullError(f'cannot use imagePullSecrets for "{parsed}": {exc}') from None
        return list(found) or [None]

    def endpoints(self, parsed: ImageRef) -> list[Endpoint]:
        """Where to ask for ``parsed``, in order (``mirrors.plan_endpoints``)."""
        try:
            return plan_endpoints(
                parsed.domain, self.registry_config_path, pinned=bool(parsed.digest), insecure=self.insecure
            )
        except MirrorConfigError as exc:
            raise ImagePullError(f'failed to pull image "{parsed}": registry config: {exc}') from None

    def _each_endpoint(
        self,
        parsed: ImageRef,
        auths: Sequence[AuthConfig | None],
        op: Callable[[Endpoint, Path | None], _T],
    ) -> _T:
        """``op`` on each planned endpoint with each credential meant for it, first success wins.

        The error raised is the last endpoint's (the upstream server when it is configured, as in
        containerd, whose message names the last host tried)."""
        last: ImagePullError | None = None
        plan = self.endpoints(parsed)
        if not plan:
            raise ImagePullError(f'failed to pull image "{parsed}": no registry host is allowed to serve it')
        for ep in plan:
            for cred in auths if not ep.mirror else [None]:
                with self._authfile(ep, cred) as path:
                    try:
                        return op(ep, path)
                    except ImagePullError as exc:
                        if ep.mirror:
                            log.info("mirror %s could not serve %s: %s", ep.url(), parsed, exc)
                        last = exc
        assert last is not None
        raise last

    @contextlib.contextmanager
    def _authfile(self, ep: Endpoint, cred: AuthConfig | None) -> Iterator[Path | None]:
        """A 0600 containers-auth.json holding only ``cred`` for this endpoint, removed after use."""
        if cred is None:
            yield None
            return
        fd, name = tempfile.mkstemp(dir=self.root / "tmp", prefix="auth-", suffix=".json")
        path = Path(name)
        try:
            with os.fdopen(fd, "w") as f:  # mkstemp creates it 0600
                json.dump(authfile(ep.host, cred), f)
            yield path
        finally:
            path.unlink(missing_ok=True)

    @contextlib.contextmanager
    def _tls_flags(self, ep: Endpoint, prefix: str) -> Iterator[list[str]]:
        """skopeo's TLS flags for ``ep`` (``prefix`` "" for inspect, "src-" for copy): no
        verification (which also allows plain HTTP), or a cert dir holding the hosts.toml ``ca``."""
        if not ep.tls_verify:
            yield [f"--{prefix}tls-verify=false"]
            return
        if not ep.ca:
            yield []
            return
        with tempfile.TemporaryDirectory(dir=self.root / "tmp", prefix="certs-") as d:
            for i, ca in enumerate(ep.ca):
                shutil.copyfile(ca, Path(d) / f"ca-{i}.crt")  # skopeo reads *.crt as CAs
            yield [f"--{prefix}cert-dir", d]

    def _inspect_raw(self, parsed: ImageRef, auth: Path | None, ep: Endpoint | None = None) -> bytes:
        """The manifest (or index) the reference names, exactly as the registry serves it."""
        ep = ep or self.endpoints(parsed)[0]
        auth_flag = ["--authfile", str(auth)] if auth else []
        try:
            with self._tls_flags(ep, "") as tls:
                res = self.runner.run(
                    ["skopeo", "inspect", "--raw", *auth_flag, *tls, f"docker://{parsed.at(ep.host)}"],
                    timeout=self.pull_timeout,
                )
        except OSError as exc:
            raise ImagePullError(f'failed to pull image "{parsed}": {ep.url()}: {exc}') from exc
        except CommandError as exc:
            raise ImagePullError(_pull_reason(str(parsed), exc.stderr)) from exc
        raw = res.stdout
        if parsed.digest and _sha256_bytes(raw) != parsed.digest:
            raise ImagePullError(
                f'failed to pull image "{parsed}": manifest digest mismatch: the registry served '
                f"{_sha256_bytes(raw)} for {parsed.digest}"
            )
        return raw

    def _resolve_digest(self, parsed: ImageRef, auth: Path | None = None, ep: Endpoint | None = None) -> str:
        return _sha256_bytes(self._inspect_raw(parsed, auth, ep))

    def _pull(self, parsed: ImageRef, auth: Path | None = None, ep: Endpoint | None = None) -> Image:
        norm = str(parsed)
        ep = ep or self.endpoints(parsed)[0]
        log.info("pulling image %s from %s", norm, ep.url())
        raw = self._inspect_raw(parsed, auth, ep)
        repo_digest = _sha256_bytes(raw)
        try:
            top = json.loads(raw)
        except ValueError as exc:
            raise ImagePullError(f'failed to pull image "{norm}": the registry served an unreadable manifest') from exc
        target = repo_digest
        if isinstance(top, dict) and (top.get("mediaType") in MEDIA_INDEXES or "manifests" in top):
            try:
                target = str(choose_manifest(top, self.platform)["digest"])
            except (NoMatchingPlatform, KeyError) as exc:
                raise ImagePullError(f'failed to pull image "{norm}": {exc}') from None
        auth_flag = ["--src-authfile", str(auth)] if auth else []
        with tempfile.TemporaryDirectory(dir=self.root / "tmp") as tmp:
            dest = Path(tmp) / "img"
            try:
                with self._tls_flags(ep, "src-") as tls:
                    self.runner.run(
                        [
                            "skopeo",
                            "copy",
                            "--quiet",
                            *auth_flag,
                            *tls,
                            f"docker://{ep.host}/{parsed.path}@{target}",
                            f"dir:{dest}",
                        ],
                        timeout=self.pull_timeout,
                    )
            except OSError as exc:
                raise ImagePullError(f'failed to pull image "{norm}": {ep.url()}: {exc}') from exc
            except CommandError as exc:
                raise ImagePullError(_pull_reason(norm, exc.stderr)) from exc
            got = _sha256_file(dest / "manifest.json")
            if got != target:
                raise ImagePullError(f'failed to pull image "{norm}": manifest {got} is not the {target} asked for')
            if target != repo_digest:
                # Keep the index too, so the repo digest we report names content we hold.
                self._blob(repo_digest).write_bytes(raw)
            return self._ingest_dir(dest, norm, repo_digest, parsed.repository)

    def import_archive(self, archive: str | Path, name: str | None = None) -> Image:
        """``kubelab image import``: load an OCI archive (``oci-archive:``) without a registry."""
        archive = Path(archive)
        if not archive.exists():
            raise ImageError(f"no such archive: {archive}")
        with tempfile.TemporaryDirectory(dir=self.root / "tmp") as tmp:
            dest = Path(tmp) / "img"
            src = f"oci-archive:{archive}"
            try:
                self.runner.run(["skopeo", "copy", "--quiet", src, f"dir:{dest}"])
            except CommandError as exc:
                raise ImageError(f"cannot import {archive}: {exc.stderr}") from exc
            ref_name = name or _archive_ref_name(archive) or archive.stem
            norm = str(parse_image_ref(ref_name))
            return self._ingest_dir(dest, norm, "")

    def _ingest_dir(self, src: Path, ref: str, repo_digest: str, repository: str = "") -> Image:
        """Move a skopeo ``dir:`` copy into the content-addressed store (verifying digests)."""
        manifest_bytes = (src / "manifest.json").read_bytes()
        manifest = json.loads(manifest_bytes)
        if manifest.get("mediaType") in MEDIA_INDEXES or "manifests" in manifest:
            raise ImagePullError(f"{ref}: got an index instead of a platform manifest")
        manifest_digest = "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
        cfg_digest = manifest["config"]["digest"]
        layer_digests = [layer["digest"] for layer in manifest["layers"]]
        for digest in [cfg_digest, *layer_digests]:
            blob = src / digest.split(":", 1)[1]
            if _sha256_file(blob) != digest:
                raise ImagePullError(f"{ref}: blob {digest} failed digest verification")
            final = self._blob(digest)
            if not final.exists():
                os.replace(blob, final)
        self._blob(manifest_digest).write_bytes(manifest_bytes)
        config = json.loads(self._blob(cfg_digest).read_bytes())
        diff_ids = list(config.get("rootfs", {}).get("diff_ids", []))
        if len(diff_ids) != len(layer_digests):
            raise ImagePullError(f"{ref}: config lists {len(diff_ids)} diff_ids for {len(layer_digests)} layers")
        for digest, diff_id in zip(layer_digests, diff_ids, strict=True):
            self._ensure_layer(digest, diff_id)
        size = sum(self._blob(d).stat().st_size for d in layer_digests)
        img = Image(
            ref=ref,
            manifest_digest=manifest_digest,
            config_digest=cfg_digest,
            layers=layer_digests,
            diff_ids=diff_ids,
            config=config,
            size=size,
            repo_digest=repo_digest or manifest_digest,
            last_used=time.time(),
            repository=repository,
        )
        with self._lock:
            self._save(img)
        log.info("image %s stored (id %s, %d layers)", ref, cfg_digest[:19], len(layer_digests))
        return img

    def _blob(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / digest.split(":", 1)[1]

    def layer_dir(self, diff_id: str) -> Path:
        return self.root / "layers" / diff_id.split(":", 1)[1] / "fs"

    def _ensure_layer(self, blob_digest: str, diff_id: str) -> Path:
        target = self.layer_dir(diff_id)
        if target.exists():
            return target
        with self._lock:
            if target.exists():
                return target
            blob = self._blob(blob_digest)
            if _diff_id(blob) != diff_id:
                raise ImagePullError(f"layer {blob_digest} does not match diff_id {diff_id}")
            staging = Path(tempfile.mkdtemp(dir=self.root / "tmp", prefix="layer-"))
            try:
                unpack_layer(blob, staging / "fs")
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / "fs", target)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return target

    def rootfs_layers(self, img: Image) -> list[Path]:
        """Unpacked layer dirs, **top first** (the order overlayfs wants in ``lowerdir``)."""
        dirs = [self._ensure_layer(b, d) for b, d in zip(img.layers, img.diff_ids, strict=True)]
        return list(reversed(dirs))

    # ---- garbage collection ----------------------------------------------------------------

    def disk_usage(self) -> int:
        total = 0
        for dirpath, _dirs, files in os.walk(self.root):
            for f in files:
                with contextlib.suppress(OSError):
                    total += os.lstat(os.path.join(dirpath, f)).st_size
        return total

    def gc(self, max_bytes: int, in_use: Sequence[str]) -> list[str]:
        """Remove least recently used images not in ``in_use`` until the store is under
        ``max_bytes``; then drop blobs and layers no remaining image refers to. Returns the
        removed references."""
        in_use_norm = set()
        for r in in_use:
            with contextlib.suppress(InvalidImageName):
                in_use_norm.add(str(parse_image_ref(r)))
        removed: list[str] = []
        with self._lock:
            candidates = sorted((i for i in self.list_images() if i.ref not in in_use_norm), key=lambda i: i.last_used)
            for img in candidates:
                if self.disk_usage() <= max_bytes:
                    break
                self._record_path(img.ref).unlink(missing_ok=True)
                removed.append(img.ref)
                self._sweep()
        if removed:
            log.info("image gc removed %s", removed)
        return removed

    def _sweep(self) -> None:
        keep_blobs: set[str] = set()
        keep_layers: set[str] = set()
        for img in self.list_images():
            digests = [img.config_digest, img.manifest_digest, *img.layers]
            if img.repo_digest:
                digests.append(img.repo_digest)
            keep_blobs.update(d.split(":", 1)[1] for d in digests)
            keep_layers.update(d.split(":", 1)[1] for d in img.diff_ids)
        for blob in (self.root / "blobs" / "sha256").iterdir():
            if blob.name not in keep_blobs:
                blob.unlink(missing_ok=True)
        for layer in (self.root / "layers").iterdir():
            if layer.name not in keep_layers:
                shutil.rmtree(layer, ignore_errors=True)


def _archive_ref_name(archive: Path) -> str | None:
    import tarfile

    try:
        with tarfile.open(archive) as tar:
            f = tar.extractfile("index.json")
            if f is None:
                return None
            index = json.loads(f.read())
    except (tarfile.TarError, KeyError, json.JSONDecodeError):
        return None
    for m in index.get("manifests", []):
        name = m.get("annotations", {}).get("org.opencontainers.image.ref.name")
        if name and ("/" in name or ":" in name):
            return str(name)
    return None


def _pull_reason(ref: str, stderr: str) -> str:
    """The registry's own words, trimmed of skopeo's wrapping (kubelet shows them the same way).

    skopeo logs ``time=.. level=fatal msg="..."`` with the registry's error list escaped inside
    (``errors:\\ndenied: ...\\nunauthorized: authentication required``): unescape it, drop the
    ``Error parsing image name "docker://..":`` preamble and join the errors with "; "."""
    msg = stderr.strip().splitlines()[-1] if stderr.strip() else "unknown error"
    if "msg=" in msg and msg.startswith(("time=", "level=")):
        msg = msg.split("msg=", 1)[1].strip().removeprefix('"').removesuffix('"')
        msg = msg.replace('\\"', '"')
    msg = re.sub(r'^Error parsing image name "[^"]*": ', "", msg)
    parts = [p.strip() for p in msg.replace("\\n", "\n").splitlines() if p.strip()]
    msg = " ".join(p if p.endswith(":") or i == len(parts) - 1 else p + ";" for i, p in enumerate(parts))
    return f'failed to pull and unpack image "{ref}": {msg}'
