"""Read a kubeconfig (the file kubectl uses) into the few facts a client needs.

Role: ``load_kubeconfig(path, context=None) -> ClientConfig``: the server URL, how to trust it
(``certificate-authority`` file or ``-data``, or ``insecure-skip-tls-verify``) and how to prove who
we are (client certificate and key, file or ``-data``, and/or a bearer ``token``/``tokenFile``).
Relative file paths are resolved against the kubeconfig's directory, as kubectl does.

``ClientConfig.ssl_context()`` builds the ``ssl.SSLContext`` for httpx. Inline ``-data`` keys must
pass through a file for ``load_cert_chain``: they are written to a private temporary directory
(mode 0700) that is removed as soon as the context has loaded them.

Bad input (missing file, no current context, a context naming an unknown cluster/user, bad
base64) raises ``KubeconfigError`` naming what is wrong.
"""

from __future__ import annotations

import base64
import binascii
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


class KubeconfigError(ValueError):
    pass


@dataclass
class ClientConfig:
    server: str
    ca_file: str | None = None
    ca_data: bytes | None = None
    cert_file: str | None = None
    cert_data: bytes | None = None
    key_file: str | None = None
    key_data: bytes | None = None
    token: str | None = None
    insecure_skip_tls_verify: bool = False
    namespace: str = "default"

    def ssl_context(self) -> ssl.SSLContext | bool:
        """What httpx's ``verify=`` wants; ``True`` (system trust) for plain http is harmless."""
        if not self.server.startswith("https"):
            return True
        if self.insecure_skip_tls_verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif self.ca_data is not None:
            ctx = ssl.create_default_context(cadata=self.ca_data.decode())
        elif self.ca_file is not None:
            ctx = ssl.create_default_context(cafile=self.ca_file)
        else:
            ctx = ssl.create_default_context()
        if self.cert_file or self.cert_data:
            if self.cert_data is not None or self.key_data is not None:
                with tempfile.TemporaryDirectory(prefix="kubelab-kc-") as d:
                    os.chmod(d, 0o700)
                    cert = self.cert_file or _write(Path(d) / "client.crt", self.cert_data)
                    key = self.key_file or _write(Path(d) / "client.key", self.key_data)
                    ctx.load_cert_chain(cert, key)
            else:
                ctx.load_cert_chain(str(self.cert_file), self.key_file)
        return ctx


def _write(path: Path, data: bytes | None) -> str:
    if data is None:
        raise KubeconfigError("client certificate given without its key (or the reverse)")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return str(path)


def _b64(value: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as e:
        raise KubeconfigError(f"kubeconfig: {what} is not valid base64") from e


def _named(items: Any, name: str, what: str) -> dict[str, Any]:
    for item in items or []:
        if isinstance(item, dict) and item.get("name") == name:
            body = item.get(what)
            return body if isinstance(body, dict) else {}
    raise KubeconfigError(f"kubeconfig: no {what} named {name!r}")


def load_kubeconfig(path: str | os.PathLike[str], context: str | None = None) -> ClientConfig:
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except OSError as e:
        raise KubeconfigError(f"kubeconfig {p}: {e.strerror or e}") from e
    except yaml.YAMLError as e:
        raise KubeconfigError(f"kubeconfig {p}: not valid YAML: {e}") from e
    if not isinstance(doc, dict):
        raise KubeconfigError(f"kubeconfig {p}: not a mapping")
    base = p.parent

    def resolve(f: Any) -> str:
        fp = Path(str(f))
        return str(fp if fp.is_absolute() else base / fp)

    ctx_name = context or doc.get("current-context")
    if ctx_name:
        ctx = _named(doc.get("contexts"), ctx_name, "context")
    elif len(doc.get("contexts") or []) == 1:
        ctx = doc["contexts"][0].get("context") or {}
    else:
        raise KubeconfigError(f"kubeconfig {p}: no current-context")
    cluster = _named(doc.get("clusters"), str(ctx.get("cluster", "")), "cluster")
    user = _named(doc.get("users"), str(ctx.get("user", "")), "user") if ctx.get("user") else {}
    server = cluster.get("server")
    if not server:
        raise KubeconfigError(f"kubeconfig {p}: cluster {ctx.get('cluster')!r} has no server")

    cfg = ClientConfig(server=str(server).rstrip("/"), namespace=str(ctx.get("namespace") or "default"))
    cfg.insecure_skip_tls_verify = bool(cluster.get("insecure-skip-tls-verify", False))
    if "certificate-authority-data" in cluster:
        cfg.ca_data = _b64(cluster["certificate-authority-data"], "certificate-authority-data")
    elif "certificate-authority" in cluster:
        cfg.ca_file = resolve(cluster["certificate-authority"])
    if "client-certificate-data" in user:
        cfg.cert_data = _b64(user["client-certificate-data"], "client-certificate-data")
    elif "client-certificate" in user:
        cfg.cert_file = resolve(user["client-certificate"])
    if "client-key-data" in user:
        cfg.key_data = _b64(user["client-key-data"], "client-key-data")
    elif "client-key" in user:
        cfg.key_file = resolve(user["client-key"])
    if user.get("token"):
        cfg.token = str(user["token"])
    elif user.get("tokenFile"):
        try:
            cfg.token = Path(resolve(user["tokenFile"])).read_text().strip()
        except OSError as e:
            raise KubeconfigError(f"kubeconfig {p}: tokenFile: {e.strerror or e}") from e
    has_cert = cfg.cert_file is not None or cfg.cert_data is not None
    has_key = cfg.key_file is not None or cfg.key_data is not None
    if has_cert != has_key:
        raise KubeconfigError(f"kubeconfig {p}: client certificate and key must be given together")
    return cfg
