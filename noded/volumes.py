"""Pod volumes and per-pod files, written by noded under ``<root>/pods/<uid>/``.

- ``emptyDir`` → ``volumes/<name>/`` (removed with the pod);
- ``hostPath`` → the host path itself (``DirectoryOrCreate``/``FileOrCreate`` create it; ``Directory``
  / ``File`` must exist);
- ``configMap`` / ``secret`` → ``volumes/<name>/<key>`` files (``items`` select and rename keys; secret
  values are base64 in the API and written decoded);
- ``downwardAPI`` → files from ``fieldRef``s;
- ``projected`` → one directory combining ``configMap``, ``secret``, ``downwardAPI`` and
  ``serviceAccountToken`` sources (the ``kube-api-access-*`` volume every pod gets: ``token``,
  ``ca.crt``, ``namespace``);
- ``/etc/hosts`` and ``/etc/resolv.conf`` per pod (bind-mounted read-only into every container).

configMap, secret, downwardAPI and projected volumes are written as kubelet's AtomicWriter writes
them (``pkg/volume/util/atomic_writer.go``), so a reader in the container never sees a half-updated
set of files::

    volumes/<name>/..2026_12_06_05_07_16.<random>/token     the payload, in a timestamped directory
    volumes/<name>/..data -> ..2026_12_06_05_07_16.<random> swapped atomically (rename of a symlink)
    volumes/<name>/token -> ..data/token                     what users see (one link per top entry)

A payload equal to what ``..data`` holds is not rewritten.

ServiceAccount tokens come from ``TokenManager``: requested through the TokenRequest API bound to
the pod (``request(namespace, serviceAccount, TokenRequest) -> TokenRequest``), cached, and
refreshed as kubelet's token manager does — once 80% of the token's lifetime has passed or it is
older than 24 h (plus up to 10 s of jitter). ``TokenManager.refresh_in(pod)`` tells the pod worker
when to rewrite the pod's volumes next.

Role: pure-ish file writing; the API reads (configMaps, secrets, tokens) go through callables, so
unit tests pass dicts. Missing non-optional sources raise ``VolumeError`` (the container then
waits with ``CreateContainerConfigError``, as in kubelet).

Concurrency: one pod's volumes are written by one thread at a time (the pod worker's queue);
``TokenManager`` is shared by every pod worker thread and locks its cache.
"""

from __future__ import annotations

import base64
import logging
import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from noded.runtime import oci
from noded.runtime.interface import Mount

log = logging.getLogger(__name__)

Getter = Callable[[str, str, str], dict[str, Any] | None]  # (kind, namespace, name) -> object
# (namespace, serviceAccount name, TokenRequest body) -> the answered TokenRequest
TokenRequester = Callable[[str, str, dict[str, Any]], dict[str, Any]]

DATA_DIR_NAME = "..data"
_MAX_TOKEN_AGE = 24 * 3600.0
_MAX_JITTER = 10.0


class VolumeError(Exception):
    reason = "CreateContainerConfigError"


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _select(data: Mapping[str, bytes], items: list[dict[str, Any]] | None, what: str) -> dict[str, bytes]:
    if not items:
        return dict(data)
    wanted: dict[str, bytes] = {}
    for it in items:
        if it["key"] not in data:
            if it.get("optional"):
                continue
            raise VolumeError(f"key {it['key']!r} not found in {what}")
        wanted[it["path"]] = data[it["key"]]
    return wanted


def _check_rel(rel: str) -> None:
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts or parts[0].startswith(".."):
        raise VolumeError(f"invalid path {rel!r} in a volume (must be relative, without '..')")


def _current_payload(target: Path) -> dict[str, bytes] | None:
    data_dir = target / DATA_DIR_NAME
    if not data_dir.is_symlink():
        return None
    out: dict[str, bytes] = {}
    for f in data_dir.resolve().rglob("*"):
        if f.is_file():
            out[str(f.relative_to(data_dir.resolve()))] = f.read_bytes()
    return out


def write_atomic(target: Path, payload: Mapping[str, bytes], mode: int = 0o644) -> bool:
    """Make ``target`` hold exactly ``payload`` (relative path → bytes) the AtomicWriter way.

    Returns whether anything was written (False when ``..data`` already holds the payload).
    """
    for rel in payload:
        _check_rel(rel)
    target.mkdir(parents=True, exist_ok=True)
    if _current_payload(target) == dict(payload):
        return False
    ts = datetime.now(UTC).strftime("..%Y_%m_%d_%H_%M_%S.")
    new_dir = Path(tempfile.mkdtemp(prefix=ts, dir=target))
    new_dir.chmod(0o755)
    for rel, value in payload.items():
        _write(new_dir / rel, value, mode)
        for parent in (new_dir / rel).parents:
            if parent == new_dir:
                break
            parent.chmod(0o755)
    old = (target / DATA_DIR_NAME).resolve() if (target / DATA_DIR_NAME).is_symlink() else None
    tmp_link = target / "..data_tmp"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(new_dir.name)
    os.replace(tmp_link, target / DATA_DIR_NAME)  # the atomic step: readers see old or new, never a mix
    tops = {Path(rel).parts[0] for rel in payload}
    for top in tops:
        link = target / top
        if not link.is_symlink():
            if link.exists():  # a plain file or directory from an older noded: replace it
                shutil.rmtree(link) if link.is_dir() else link.unlink()
            link.symlink_to(f"{DATA_DIR_NAME}/{top}")
    for entry in target.iterdir():
        if entry.name.startswith(".."):
            if entry.name not in (DATA_DIR_NAME, new_dir.name) and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)  # older timestamped payloads
            continue
        if entry.name not in tops:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    if old is not None and old != new_dir and old.exists():
        shutil.rmtree(old, ignore_errors=True)
    return True


class TokenManager:
    """ServiceAccount tokens for projected volumes, cached and refreshed like kubelet's token manager."""

    def __init__(self, request: TokenRequester | None, clock: Callable[[], float] = time.time) -> None:
        self._request = request
        self._clock = clock
        self._lock = threading.Lock()
        # key → (token, issued at, expires at)
        self._cache: dict[tuple[Any, ...], tuple[str, float, float]] = {}

    @staticmethod
    def _key(pod: Mapping[str, Any], src: Mapping[str, Any]) -> tuple[Any, ...]:
        md, spec = pod.get("metadata") or {}, pod.get("spec") or {}
        return (
            md.get("namespace", "default"),
            spec.get("serviceAccountName") or "default",
            src.get("audience") or "",
            int(src.get("expirationSeconds") or 3600),
            md.get("uid", ""),
        )

    def _due(self, issued: float, expires: float, now: float, jitter: float) -> float:
        """Seconds until the token must be refreshed (≤ 0: now)."""
        ttl = expires - issued
        return min(issued + _MAX_TOKEN_AGE, expires - 0.2 * ttl) - jitter - now

    def token(self, pod: Mapping[str, Any], src: Mapping[str, Any]) -> str:
        key = self._key(pod, src)
        now = self._clock()
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None and self._due(cached[1], cached[2], now, random.uniform(0, _MAX_JITTER)) > 0:
            return cached[0]
        if self._request is None:
            raise VolumeError("cannot request a ServiceAccount token: noded has no API client")
        ns, sa, audience, expiration, uid = key
        body: dict[str, Any] = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [audience] if audience else None,
                "expirationSeconds": expiration,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": (pod.get("metadata") or {}).get("name", ""),
                    "uid": uid,
                },
            },
        }
        try:
            answer = self._request(ns, sa, body)
            token = str(answer["status"]["token"])
            expires = _parse_time(str(answer["status"]["expirationTimestamp"]))
        except Exception as exc:
            if cached is not None and cached[2] > now:
                log.warning("refreshing the token of %s/%s failed (%s): keeping the current one", ns, sa, exc)
                return cached[0]
            raise VolumeError(f'failed to fetch token: serviceaccounts "{sa}" token request: {exc}') from exc
        spec_exp = (answer.get("spec") or {}).get("expirationSeconds") or expiration
        with self._lock:
            self._cache[key] = (token, expires - float(spec_exp), expires)
        return token

    def refresh_in(self, pod: Mapping[str, Any]) -> float | None:
        """Seconds until one of the pod's tokens needs refreshing; None when it projects none."""
        soonest: float | None = None
        now = self._clock()
        for src in _token_sources(pod):
            with self._lock:
                cached = self._cache.get(self._key(pod, src))
            due = 0.0 if cached is None else self._due(cached[1], cached[2], now, 0.0)
            soonest = due if soonest is None else min(soonest, due)
        return soonest

    def forget(self, uid: str) -> None:
        """Drop the tokens of a pod that is gone."""
        with self._lock:
            for key in [k for k in self._cache if k[4] == uid]:
                del self._cache[key]


def _token_sources(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    out = []
    for v in (pod.get("spec") or {}).get("volumes") or []:
        for src in (v.get("projected") or {}).get("sources") or []:
            if "serviceAccountToken" in src:
                out.append(src["serviceAccountToken"])
    return out


def _parse_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def _configmap_data(obj: Mapping[str, Any]) -> dict[str, bytes]:
    data = {k: str(val).encode() for k, val in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(val) for k, val in (obj.get("binaryData") or {}).items()})
    return data


def _secret_data(obj: Mapping[str, Any]) -> dict[str, bytes]:
    data = {k: base64.b64decode(val) for k, val in (obj.get("data") or {}).items()}
    data.update({k: str(val).encode() for k, val in (obj.get("stringData") or {}).items()})
    return data


def _downward(pod: Mapping[str, Any], items: list[dict[str, Any]] | None) -> dict[str, bytes]:
    return {
        it["path"]: oci.field_ref(pod, it["fieldRef"]["fieldPath"]).encode() for it in items or [] if "fieldRef" in it
    }


def _projected(
    pod: Mapping[str, Any], ns: str, proj: Mapping[str, Any], getter: Getter, tokens: TokenManager | None
) -> dict[str, bytes]:
    payload: dict[str, bytes] = {}
    for src in proj.get("sources") or []:
        if "serviceAccountToken" in src:
            if tokens is None:
                raise VolumeError("serviceAccountToken projection needs a token manager")
            payload[src["serviceAccountToken"].get("path", "token")] = tokens.token(
                pod, src["serviceAccountToken"]
            ).encode()
        elif "configMap" in src or "secret" in src:
            kind = "configMap" if "configMap" in src else "secret"
            ref = src[kind]
            obj = getter(kind, ns, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                plural = "configmaps" if kind == "configMap" else "secrets"
                raise VolumeError(f'{plural} "{ref.get("name", "")}" not found')
            data = _configmap_data(obj) if kind == "configMap" else _secret_data(obj)
            payload.update(_select(data, ref.get("items"), f'{kind} "{ref.get("name", "")}"'))
        elif "downwardAPI" in src:
            payload.update(_downward(pod, src["downwardAPI"].get("items")))
    return payload


def prepare_volumes(
    pod: Mapping[str, Any], pod_dir: Path, getter: Getter, tokens: TokenManager | None = None
) -> dict[str, str]:
    """Create (or bring up to date) every volume of ``pod``; return {volume name: host path}."""
    ns = pod.get("metadata", {}).get("namespace", "default")
    out: dict[str, str] = {}
    for v in pod.get("spec", {}).get("volumes") or []:
        name = v["name"]
        target = pod_dir / "volumes" / name
        if "emptyDir" in v:
            target.mkdir(parents=True, exist_ok=True)
            target.chmod(0o777)
            out[name] = str(target)
        elif "hostPath" in v:
            hp = v["hostPath"]
            path = Path(hp["path"])
            kind = hp.get("type", "")
            if kind == "DirectoryOrCreate":
                path.mkdir(parents=True, exist_ok=True)
            elif kind == "FileOrCreate":
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch(exist_ok=True)
            elif kind == "Directory" and not path.is_dir():
                raise VolumeError(f"hostPath volume {name}: {path} is not a directory")
            elif kind == "File" and not path.is_file():
                raise VolumeError(f"hostPath volume {name}: {path} is not a file")
            out[name] = str(path)
        elif "configMap" in v or "secret" in v:
            kind = "configMap" if "configMap" in v else "secret"
            src = v[kind]
            obj_name = src.get("name") or src.get("secretName", "")
            obj = getter(kind, ns, obj_name)
            if obj is None:
                if src.get("optional"):
                    target.mkdir(parents=True, exist_ok=True)
                    out[name] = str(target)
                    continue
                raise VolumeError(f'{kind} "{obj_name}" not found')
            data = _configmap_data(obj) if kind == "configMap" else _secret_data(obj)
            write_atomic(
                target, _select(data, src.get("items"), f'{kind} "{obj_name}"'), int(src.get("defaultMode", 0o644))
            )
            out[name] = str(target)
        elif "downwardAPI" in v:
            dapi = v["downwardAPI"]
            write_atomic(target, _downward(pod, dapi.get("items")), int(dapi.get("defaultMode", 0o644)))
            out[name] = str(target)
        elif "projected" in v:
            proj = v["projected"]
            write_atomic(target, _projected(pod, ns, proj, getter, tokens), int(proj.get("defaultMode", 0o644)))
            out[name] = str(target)
        else:
            raise VolumeError(f"volume {name}: unsupported volume type ({', '.join(k for k in v if k != 'name')})")
    return out


def container_mounts(
    container: Mapping[str, Any], volumes: Mapping[str, str], pod_files: Mapping[str, str]
) -> list[Mount]:
    """Binds for one container: its volumeMounts (with subPath), then /etc/hosts and resolv.conf."""
    mounts: list[Mount] = []
    for vm in container.get("volumeMounts") or []:
        host = volumes.get(vm["name"])
        if host is None:
            raise VolumeError(f"volumeMount {vm['name']!r} names no volume of the pod")
        if vm.get("subPath"):
            host = os.path.join(host, vm["subPath"])
            if not os.path.exists(host):
                os.makedirs(host, exist_ok=True)
        mounts.append(Mount(host, vm["mountPath"], bool(vm.get("readOnly"))))
    taken = {m.container_path for m in mounts}
    for dest, host in pod_files.items():
        if dest not in taken:
            mounts.append(Mount(host, dest, False))
    return mounts


def write_pod_files(
    pod: Mapping[str, Any], pod_dir: Path, pod_ip: str, cluster_dns: str, cluster_domain: str = "cluster.local"
) -> dict[str, str]:
    """/etc/hosts and /etc/resolv.conf for the pod; returns {container path: host path}."""
    md, spec = pod.get("metadata", {}), pod.get("spec", {})
    ns = md.get("namespace", "default")
    hostname = spec.get("hostname") or md.get("name", "")
    hosts = (
        "# Kubernetes-managed hosts file (kubelab noded).\n"
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    if pod_ip:
        fqdn = f"{hostname}.{spec['subdomain']}.{ns}.svc.{cluster_domain}\t" if spec.get("subdomain") else ""
        hosts += f"{pod_ip}\t{fqdn}{hostname}\n"
    for ha in spec.get("hostAliases") or []:
        hosts += f"{ha['ip']}\t{' '.join(ha.get('hostnames', []))}\n"
    policy = spec.get("dnsPolicy", "ClusterFirst")
    if policy == "Default" or spec.get("hostNetwork"):
        try:
            resolv = Path("/etc/resolv.conf").read_text()
        except OSError:
            resolv = ""
    else:
        resolv = (
            f"search {ns}.svc.{cluster_domain} svc.{cluster_domain} {cluster_domain}\n"
            f"nameserver {cluster_dns}\noptions ndots:5\n"
        )
    pod_dir.mkdir(parents=True, exist_ok=True)
    _write(pod_dir / "etc-hosts", hosts.encode())
    _write(pod_dir / "resolv.conf", resolv.encode())
    return {"/etc/hosts": str(pod_dir / "etc-hosts"), "/etc/resolv.conf": str(pod_dir / "resolv.conf")}


def remove_pod_dir(pod_dir: Path) -> None:
    shutil.rmtree(pod_dir, ignore_errors=True)
