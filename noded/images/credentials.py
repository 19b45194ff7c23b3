"""Registry credentials from a pod's ``imagePullSecrets``, matched to an image as kubelet does.

Role: pure lookup. ``DockerKeyring`` holds the entries of one or more Docker config files
(``kubernetes.io/dockerconfigjson`` secrets carry ``{"auths": {KEY: {...}}}``, the older
``kubernetes.io/dockercfg`` ones carry ``{KEY: {...}}``) and ``lookup(image)`` returns every
credential that applies to an image, most specific first. ``PullSecrets`` fetches the pod's secrets
through a getter, lazily: only a pull that really goes to the registry reads them. ``authfile``
renders credentials as a containers-auth.json document for ``skopeo --authfile``.

Kubernetes' matching rules (``pkg/credentialprovider/keyring.go``), which we follow:
- a key may carry a scheme (``https://``), which is dropped, and a path; ``/v1/`` or ``/v2/`` as
  the path means the whole host (``https://index.docker.io/v1/`` is the classic Docker Hub key);
- a key matches an image when the ports are equal (none on both, or the same number), the host
  names have as many dot-separated parts and each part glob-matches (``*.example.com``), and the
  key's path is a prefix of the image's repository path;
- keys are tried in reverse lexical order, so ``registry/team`` wins over ``registry``;
- when nothing matches and the image is on Docker Hub (``busybox``, ``library/x``, ``docker.io/x``,
  ``index.docker.io/x``), credentials stored under ``index.docker.io`` apply. (``localhost/x`` is
  not Docker Hub here, as image names treat ``localhost`` as a registry; kubelet's check misses it.)

Invariant: a credential's password never appears in a repr, a log line or an exception message.
Concurrency: a keyring is built per pull and not shared; ``PullSecrets`` is used by one thread.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

DOCKER_HUB_HOST = "index.docker.io"
SECRET_TYPE_DOCKERCONFIGJSON = "kubernetes.io/dockerconfigjson"
SECRET_TYPE_DOCKERCFG = "kubernetes.io/dockercfg"
Getter = Callable[[str, str, str], dict[str, Any] | None]  # (kind, namespace, name) -> object


class CredentialError(Exception):
    """A pull secret that cannot be read (bad base64 or JSON); names the secret, never its data."""


@dataclass(frozen=True)
class AuthConfig:
    """One username/password pair for a registry (the ``auth`` field decoded)."""

    username: str
    password: str = field(repr=False)

    @property
    def auth(self) -> str:
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def _entry_to_auth(entry: Mapping[str, Any]) -> AuthConfig:
    """Docker's config entry: ``auth`` (base64 ``user:pass``) wins over username/password."""
    user = str(entry.get("username") or "")
    password = str(entry.get("password") or "")
    raw = entry.get("auth")
    if raw:
        try:
            decoded = base64.b64decode(str(raw), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise CredentialError("an 'auth' field is not base64 of 'user:password'") from exc
        user, sep, password = decoded.partition(":")
        if not sep:
            raise CredentialError("an 'auth' field does not hold 'user:password'")
    return AuthConfig(user, password)


@dataclass(frozen=True)
class _Key:
    host: str  # without port
    port: str
    path: str  # "" or "/team/..." (no trailing slash handling beyond Kubernetes' prefix test)


def _split_host_port(hostport: str) -> tuple[str, str]:
    if hostport.startswith("["):  # IPv6 literal
        host, _, rest = hostport[1:].partition("]")
        return host, rest[1:] if rest.startswith(":") else ""
    host, sep, port = hostport.rpartition(":")
    if sep and port.isdigit():
        return host, port
    return hostport, ""


def _parse_key(key: str) -> _Key:
    """A config key (``https://host:port/path``, ``host``, ``host/path``) normalised as kubelet does."""
    value = key.strip()
    for scheme in ("https://", "http://"):
        if value.startswith(scheme):
            value = value[len(scheme) :]
            break
    hostport, slash, path = value.partition("/")
    path = slash + path
    if path.startswith(("/v1/", "/v2/")):
        path = path[3:]
    if path == "/":
        path = ""
    host, port = _split_host_port(hostport)
    return _Key(host.lower(), port, path)


def _image_parts(image: str) -> tuple[str, str, str]:
    """``host[:port]/repo/path`` (already normalised, no tag) → (host, port, "/repo/path")."""
    hostport, _, path = image.partition("/")
    host, port = _split_host_port(hostport)
    return host.lower(), port, "/" + path


def _matches(key: _Key, image: str) -> bool:
    host, port, path = _image_parts(image)
    if key.port != port:
        return False
    glob_parts, parts = key.host.split("."), host.split(".")
    if len(glob_parts) != len(parts):
        return False
    if not path.startswith(key.path):
        return False
    return all(fnmatch.fnmatchcase(p, g) for g, p in zip(glob_parts, parts, strict=True))


def is_docker_hub(image: str) -> bool:
    """Whether an image name (as written in a pod) pulls from Docker Hub."""
    first, sep, _ = image.partition("/")
    if not first:
        return False
    if not sep:
        return True
    if first in ("docker.io", DOCKER_HUB_HOST):
        return True
    return not any(c in first for c in ".:") and first != "localhost"


def _repository(image: str) -> str:
    """Strip the tag and digest: ``host:5000/a/b:v1@sha256:..`` → ``host:5000/a/b``."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: len(name) - len(last[-1])] + last[-1].split(":", 1)[0]
    return name


class DockerKeyring:
    """Credentials keyed like Docker's config files; ``lookup`` applies Kubernetes' rules."""

    def __init__(self) -> None:
        self._creds: dict[str, list[AuthConfig]] = {}
        self._keys: dict[str, _Key] = {}

    def add(self, entries: Mapping[str, Any]) -> None:
        """Add one config's entries (the mapping under ``auths``, or a whole ``.dockercfg``)."""
        for loc, entry in entries.items():
            if not isinstance(entry, Mapping):
                raise CredentialError(f"entry {loc!r} is not an object")
            parsed = _parse_key(str(loc))
            name = parsed.host + (f":{parsed.port}" if parsed.port else "") + parsed.path
            self._creds.setdefault(name, []).append(_entry_to_auth(entry))
            self._keys[name] = parsed

    def __bool__(self) -> bool:
        return bool(self._creds)

    def lookup(self, image: str) -> list[AuthConfig]:
        """Every credential for ``image`` (a normalised name such as ``docker.io/library/x:tag``),
        most specific key first; empty when none applies."""
        repo = _repository(image)
        out: list[AuthConfig] = []
        for name in sorted(self._keys, reverse=True):
            if _matches(self._keys[name], repo):
                out.extend(self._creds[name])
        if not out and is_docker_hub(repo):
            out.extend(self._creds.get(DOCKER_HUB_HOST, []))
        return out


def keyring_from_secrets(secrets: Iterable[Mapping[str, Any]]) -> DockerKeyring:
    """A keyring from Secret objects (API JSON, ``data`` base64) of the two docker types; other
    types and empty data are skipped, as kubelet does. Unreadable data raises ``CredentialError``."""
    ring = DockerKeyring()
    for secret in secrets:
        name = (secret.get("metadata") or {}).get("name", "?")
        data = secret.get("data") or {}
        stype = secret.get("type")
        if stype == SECRET_TYPE_DOCKERCONFIGJSON and data.get(".dockerconfigjson"):
            doc = _decode(name, data[".dockerconfigjson"])
            auths = doc.get("auths") if isinstance(doc, Mapping) else None
            if not isinstance(auths, Mapping):
                raise CredentialError(f'secret "{name}": .dockerconfigjson has no "auths" object')
            entries: Mapping[str, Any] = auths
        elif stype == SECRET_TYPE_DOCKERCFG and data.get(".dockercfg"):
            doc = _decode(name, data[".dockercfg"])
            if not isinstance(doc, Mapping):
                raise CredentialError(f'secret "{name}": .dockercfg is not an object')
            entries = doc
        else:
            continue
        try:
            ring.add(entries)
        except CredentialError as exc:
            raise CredentialError(f'secret "{name}": {exc}') from None
    return ring


def _decode(name: str, value: str) -> Any:
    try:
        return json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise CredentialError(f'secret "{name}": docker config is not base64-encoded JSON') from exc


class PullSecrets:
    """A pod's ``imagePullSecrets``, read through ``getter`` the first time a pull needs them.

    A secret that does not exist is skipped with a warning (kubelet does the same and pulls with
    what it has); ``missing`` lists their names, and ``on_missing`` gets kubelet's message for its
    ``FailedToRetrieveImagePullSecret`` event.
    """

    def __init__(self, pod: Mapping[str, Any], getter: Getter, on_missing: Callable[[str], None] | None = None) -> None:
        self._namespace = (pod.get("metadata") or {}).get("namespace") or "default"
        self._names = [
            str(ref.get("name"))
            for ref in (pod.get("spec") or {}).get("imagePullSecrets") or []
            if isinstance(ref, Mapping) and ref.get("name")
        ]
        self._getter = getter
        self._on_missing = on_missing
        self._ring: DockerKeyring | None = None
        self.missing: list[str] = []

    @property
    def names(self) -> Sequence[str]:
        return tuple(self._names)

    def keyring(self) -> DockerKeyring:
        if self._ring is None:
            found = []
            for name in self._names:
                obj = self._getter("secret", self._namespace, name)
                if obj is None:
                    log.warning("image pull secret %s/%s not found; pulling without it", self._namespace, name)
                    self.missing.append(name)
                    continue
                found.append(obj)
            if self.missing and self._on_missing is not None:
                self._on_missing(
                    f"Unable to retrieve some image pull secrets ({', '.join(self.missing)}); "
                    "attempting to pull the image may not succeed."
                )
            self._ring = keyring_from_secrets(found)
        return self._ring


def authfile(registry: str, creds: AuthConfig) -> dict[str, Any]:
    """A containers-auth.json document giving ``creds`` for ``registry`` (``host[:port]``)."""
    return {"auths": {registry: {"auth": creds.auth}}}
