"""Start the real ``kubelab apiserver`` (or ``kubelab controlplane``) as a subprocess for tests.

``start_apiserver(tmp_path)`` picks a free port on 127.0.0.1, runs the server with its data dir
under ``tmp_path``, waits for ``/readyz`` and returns a ``RunningApiServer``. The process is
stopped by pid (``stop``: SIGTERM then SIGKILL; ``kill``: SIGKILL at once); ``restart`` brings it
back on the same port and data dir. Server output goes to ``<data_dir>/apiserver.log``.

A bare ``kubelab apiserver`` runs with the ServiceAccount admission plugin off unless asked
(``service_account_admission=True``): without a controller-manager no namespace ever gets its
``default`` ServiceAccount, so every pod would be refused, as a real kube-apiserver alone would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.wait import wait_for

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RunningApiServer:
    def __init__(
        self,
        data_dir: Path,
        port: int,
        store: str,
        etcd_endpoints: Sequence[str] | None,
        controlplane: bool,
        extra_args: Sequence[str],
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.store = store
        self.etcd_endpoints = list(etcd_endpoints or [])
        self.controlplane = controlplane
        self.extra_args = list(extra_args)
        self.url = f"https://127.0.0.1:{port}"
        self.kubeconfig = data_dir / "admin.kubeconfig"
        self.ca_file = data_dir / "pki" / "ca.crt"
        self.cert_file = data_dir / "pki" / "admin.crt"
        self.key_file = data_dir / "pki" / "admin.key"
        self.log_path = data_dir / "apiserver.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- process control -----------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        cmd = [
            sys.executable,
            "-m",
            "lab",
            "controlplane" if self.controlplane else "apiserver",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--store",
            self.store,
            *(["--etcd-endpoints", ",".join(self.etcd_endpoints)] if self.etcd_endpoints else []),
            *self.extra_args,
        ]
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 (handed to the child)
        try:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            log.close()
        try:
            wait_for(self._ready, timeout=timeout, message=f"apiserver on {self.url} to be ready")
        except BaseException:
            tail = self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""
            self.kill()
            raise AssertionError(f"apiserver did not become ready; log tail:\n{tail}") from None
        if self.controlplane and "ServiceAccount" not in " ".join(self.extra_args):
            # Like Kubernetes' e2e framework: pods can be admitted once the namespace has its
            # default ServiceAccount (the controller-manager makes it right after it starts).
            wait_for(self._default_sa, timeout=timeout, message="the default ServiceAccount in namespace default")

    def _default_sa(self) -> bool:
        with self.http() as c:
            return c.get("/api/v1/namespaces/default/serviceaccounts/default").status_code == 200

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"apiserver exited with {self.proc.returncode}")
        try:
            r = httpx.get(f"{self.url}/readyz", verify=False, timeout=1.0)
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = None
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.proc = None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self.proc = None

    def restart(self, timeout: float = 30.0) -> None:
        self.stop()
        self.start(timeout=timeout)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    # -- clients ----------------------------------------------------------------------------

    def http(self, *, auth: bool = True, **kw: Any) -> httpx.Client:
        """An httpx client for raw requests (admin certificate unless ``auth=False``)."""
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        if auth:
            ctx.load_cert_chain(str(self.cert_file), str(self.key_file))
        return httpx.Client(base_url=self.url, verify=ctx, timeout=kw.pop("timeout", 10.0), **kw)

    def client(self) -> Any:
        """A ``controlplane.client.rest.ApiClient`` for the admin user."""
        from controlplane.client.rest import ApiClient

        return ApiClient.from_kubeconfig(str(self.kubeconfig))

    def __enter__(self) -> RunningApiServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_apiserver(
    tmp_path: Path,
    store: str = "memory",
    etcd_endpoints: Sequence[str] | None = None,
    controlplane: bool = False,
    extra_args: Sequence[str] = (),
    port: int | None = None,
    timeout: float = 30.0,
    service_account_admission: bool | None = None,
) -> RunningApiServer:
    """Start the server (data dir ``tmp_path/apiserver``); the caller must ``stop()`` it."""
    if service_account_admission is None:
        service_account_admission = controlplane
    if not service_account_admission and not any(a.startswith("--disable-admission-plugins") for a in extra_args):
        extra_args = [*extra_args, "--disable-admission-plugins", "ServiceAccount"]
    last: BaseException | None = None
    for _attempt in range(3):  # a free port can be taken between probing and binding
        srv = RunningApiServer(
            Path(tmp_path) / "apiserver", port or free_port(), store, etcd_endpoints, controlplane, extra_args
        )
        try:
            srv.start(timeout=timeout)
            return srv
        except AssertionError as e:
            last = e
            if port is not None or "address already in use" not in str(e).lower():
                raise
            time.sleep(0.1)
    assert last is not None
    raise last
