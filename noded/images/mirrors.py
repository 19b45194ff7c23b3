"""Registry mirrors per registry host, in containerd's ``hosts.toml`` model (containerd docs/hosts.md).

Role: a pure planner. ``plan_endpoints(ref, config_dir, need)`` answers "which registry endpoints,
in which order, does noded try for this image reference", reading (never writing) a config
directory laid out as containerd's ``config_path`` / ``ctr --hosts-dir``::

    <config_dir>/docker.io/hosts.toml
    <config_dir>/registry.k8s.io/hosts.toml
    <config_dir>/_default/hosts.toml          (any registry without a directory of its own)

with, for example::

    server = "https://registry-1.docker.io"
    [host."http://192.168.56.1:5000"]
      capabilities = ["pull", "resolve"]

The rules followed (containerd remotes/docker/config/hosts.go):

- the directory of ``host:port`` is looked up first as ``host_port_`` then ``host:port``, then
  ``_default`` (hostPaths/hostDirectory); the first that exists is used. When it holds no
  ``hosts.toml``, or none exists, the registry is asked directly, exactly as with no config
  directory at all;
- the ``[host."…"]`` tables are tried in the order the file lists them, then ``server`` (default
  ``https://<registry>``; ``https://registry-1.docker.io`` for ``docker.io``) as the fallback;
- ``capabilities`` (default ``["pull", "resolve", "push"]``): resolving a tag needs ``resolve``
  and ``pull``; fetching a reference pinned by digest needs only ``pull`` (a mirror that may not
  say what a tag means may still serve content named by its digest);
- ``skip_verify = true`` or an ``http://`` scheme means no TLS verification (skopeo's
  ``--tls-verify=false``, which also lets it speak plain HTTP); ``ca`` (a path or a list) is
  handed to skopeo as a certificate directory;
- a host URL's path is its API root: none means ``/v2``; ``override_path = true`` makes the path
  the API root as written. skopeo always speaks ``/v2`` at the host's root, so a host whose API root
  is anything else cannot be used by noded: it is skipped with a warning (never silently
  contacted at the wrong path).

Image names are normalised as Kubernetes and containerd do (``store.parse_image_ref``): ``nginx``
→ ``docker.io/library/nginx:latest``. A mirror is asked for the same repository path
(``library/nginx``) under its own host; the image keeps its upstream name in the store and in
container statuses, whichever endpoint served it (containerd does the same).

Concurrency: pure functions; the directory is re-read on every plan (containerd too: "updates
under this directory do not require restarting"), which costs one small file read per pull.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

DOCKER_HUB = "docker.io"
DOCKER_HUB_SERVER = "https://registry-1.docker.io"
ALL_CAPABILITIES = frozenset({"pull", "resolve", "push"})
KNOWN_CAPABILITIES = ALL_CAPABILITIES


class MirrorConfigError(ValueError):
    """A hosts.toml that cannot be read or means nothing valid (the message names the file)."""


@dataclass(frozen=True)
class Endpoint:
    """One place to ask: a registry host (``host[:port]``, what a ``docker://`` reference names)."""

    host: str
    scheme: str = "https"
    capabilities: frozenset[str] = ALL_CAPABILITIES
    skip_verify: bool = False
    ca: tuple[str, ...] = ()
    mirror: bool = False  # True for a [host."…"] entry, False for the registry itself (server)

    @property
    def tls_verify(self) -> bool:
        return self.scheme == "https" and not self.skip_verify

    def url(self) -> str:
        return f"{self.scheme}://{self.host}"


def host_dirs(config_dir: Path, registry: str) -> list[Path]:
    """The directories consulted for ``registry``, in order (containerd's hostPaths)."""
    out: list[Path] = []
    host, sep, port = registry.rpartition(":")
    if sep and host and port.isdigit():
        out.append(config_dir / f"{host}_{port}_")
    out += [config_dir / registry, config_dir / "_default"]
    return out


def default_server(registry: str) -> str:
    return DOCKER_HUB_SERVER if registry == DOCKER_HUB else f"https://{registry}"


def _parse_url(raw: str, where: str) -> tuple[str, str, str]:
    """(scheme, host[:port], path) of a server or host key; a bare ``host`` means https."""
    if "://" not in raw:
        raw = "https://" + raw
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise MirrorConfigError(f"{where}: {raw!r}: want http(s)://host[:port][/path]")
    return parts.scheme, parts.netloc, parts.path.rstrip("/")


def _capabilities(raw: Any, where: str) -> frozenset[str]:
    if raw is None:
        return ALL_CAPABILITIES
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise MirrorConfigError(f"{where}: capabilities must be a list of strings")
    if bad := sorted(set(raw) - KNOWN_CAPABILITIES):
        raise MirrorConfigError(f"{where}: unknown capability {bad[0]!r} (want pull, resolve, push)")
    return frozenset(raw)


def _ca(raw: Any, where: str) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and all(isinstance(c, str) for c in raw):
        return tuple(raw)
    raise MirrorConfigError(f"{where}: ca must be a path or a list of paths")


def _endpoint(key: str, table: dict[str, Any], where: str, *, mirror: bool) -> Endpoint | None:
    scheme, host, path = _parse_url(key, where)
    api_root = path if table.get("override_path") else path + "/v2"
    if api_root != "/v2":
        log.warning(
            "%s: %s has API root %s; noded's puller speaks /v2 at a host's root only: skipped", where, key, api_root
        )
        return None
    return Endpoint(
        host=host,
        scheme=scheme,
        capabilities=_capabilities(table.get("capabilities"), where),
        skip_verify=bool(table.get("skip_verify", False)),
        ca=_ca(table.get("ca"), where),
        mirror=mirror,
    )


def parse_hosts_toml(text: str, registry: str, where: str = "hosts.toml") -> list[Endpoint]:
    """Every usable endpoint of one hosts.toml, mirrors first (file order), then the server."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MirrorConfigError(f"{where}: {exc}") from None
    out: list[Endpoint] = []
    hosts = doc.get("host", {})
    if not isinstance(hosts, dict):
        raise MirrorConfigError(f"{where}: [host] must be tables keyed by URL")
    for key, table in hosts.items():  # tomllib keeps the file's order
        if not isinstance(table, dict):
            raise MirrorConfigError(f"{where}: host {key!r} must be a table")
        ep = _endpoint(key, table, where, mirror=True)
        if ep is not None:
            out.append(ep)
    server = doc.get("server", default_server(registry))
    if not isinstance(server, str):
        raise MirrorConfigError(f"{where}: server must be a URL string")
    # The server's own options sit at the top level of the file (containerd: capabilities, ca,
    # skip_verify, override_path apply to `server`).
    ep = _endpoint(server, doc, where, mirror=False)
    if ep is not None:
        out.append(ep)
    return out


def registry_endpoints(config_dir: Path | None, registry: str) -> list[Endpoint]:
    """All endpoints configured for ``registry`` (no capability filter)."""
    if config_dir is not None:
        for d in host_dirs(Path(config_dir), registry):
            if not d.is_dir():
                continue
            # containerd takes the first directory that exists; one without hosts.toml (a Docker
            # style certs directory) means the registry itself.
            f = d / "hosts.toml"
            try:
                text = f.read_text()
            except FileNotFoundError:
                break
            except OSError as exc:
                raise MirrorConfigError(f"{f}: {exc}") from None
            return parse_hosts_toml(text, registry, str(f))
    # No configuration: the registry itself, as skopeo names it (docker.io stays docker.io: the
    # tool knows Docker Hub's API host), exactly as before mirrors existed.
    return [Endpoint(host=registry)]


def required_capabilities(pinned: bool) -> frozenset[str]:
    """What an endpoint must be allowed to do: a tag needs resolve + pull, a digest only pull."""
    return frozenset({"pull"}) if pinned else frozenset({"pull", "resolve"})


def plan_endpoints(
    registry: str,
    config_dir: Path | None,
    *,
    pinned: bool,
    insecure: Iterable[str] = (),
) -> list[Endpoint]:
    """The endpoints to try, in order, for an image on ``registry`` (tag or ``pinned`` digest).

    ``insecure`` are the registries named with ``--insecure-registry``: any endpoint on one of
    them skips TLS verification (the flag predates mirrors and still applies per host)."""
    need = required_capabilities(pinned)
    insecure_set = set(insecure)
    out: list[Endpoint] = []
    for ep in registry_endpoints(config_dir, registry):
        if not need <= ep.capabilities:
            continue
        if ep.host in insecure_set and ep.tls_verify:
            ep = Endpoint(ep.host, ep.scheme, ep.capabilities, True, ep.ca, ep.mirror)
        out.append(ep)
    return out
