"""Pod volumes and per-pod files, written by noded under ``<root>/pods/<uid>/``.

- ``emptyDir`` → ``volumes/<name>/`` (removed with the pod);
- ``hostPath`` → the host path itself (``DirectoryOrCreate``/``FileOrCreate`` create it; ``Directory``
  / ``File`` must exist);
- ``configMap`` / ``secret`` → ``volumes/<name>/<key>`` files (``items`` select and rename keys; secret
  values are base64 in the API and written decoded); refreshed on every sync;
- ``downwardAPI`` → files from ``fieldRef``s;
- ``/etc/hosts`` and ``/etc/resolv.conf`` per pod (bind-mounted read-only into every container).

Role: pure-ish file writing; the API reads (configMaps, secrets) go through a ``getter`` callable,
so unit tests pass dicts. Missing non-optional sources raise ``VolumeError`` (the container then
waits with ``CreateContainerConfigError``, as in kubelet).
"""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from noded.runtime import oci
from noded.runtime.interface import Mount

Getter = Callable[[str, str, str], dict[str, Any] | None]  # (kind, namespace, name) -> object


class VolumeError(Exception):
    reason = "CreateContainerConfigError"


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _project(target: Path, data: Mapping[str, bytes], items: list[dict[str, Any]] | None, mode: int) -> None:
    target.mkdir(parents=True, exist_ok=True)
    wanted: dict[str, bytes] = {}
    if items:
        for it in items:
            if it["key"] not in data:
                raise VolumeError(f"key {it['key']!r} not found")
            wanted[it["path"]] = data[it["key"]]
    else:
        wanted = dict(data)
    for rel, value in wanted.items():
        _write(target / rel, value, mode)
    for f in target.rglob("*"):
        if f.is_file() and str(f.relative_to(target)) not in wanted:
            f.unlink()


def prepare_volumes(pod: Mapping[str, Any], pod_dir: Path, getter: Getter) -> dict[str, str]:
    """Create every volume of ``pod``; return {volume name: host path}."""
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
            if kind == "configMap":
                data = {k: str(val).encode() for k, val in (obj.get("data") or {}).items()}
                data.update({k: base64.b64decode(val) for k, val in (obj.get("binaryData") or {}).items()})
            else:
                data = {k: base64.b64decode(val) for k, val in (obj.get("data") or {}).items()}
                data.update({k: str(val).encode() for k, val in (obj.get("stringData") or {}).items()})
            _project(target, data, src.get("items"), int(src.get("defaultMode", 0o644)))
            out[name] = str(target)
        elif "downwardAPI" in v:
            data = {}
            for it in v["downwardAPI"].get("items") or []:
                if "fieldRef" in it:
                    data[it["path"]] = oci.field_ref(pod, it["fieldRef"]["fieldPath"]).encode()
            _project(target, data, None, int(v["downwardAPI"].get("defaultMode", 0o644)))
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
