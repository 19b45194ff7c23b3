"""Start Debian's real ``etcd`` for a test: 127.0.0.1 only, random free ports, a temp data dir.

``start_etcd(tmp_path)`` returns an ``EtcdProcess`` (``.endpoint`` like ``http://127.0.0.1:PORT``,
``.stop()``, ``.kill()``, ``.restart()`` on the same data dir and ports); it returns once the
gRPC gateway answers ``/v3/maintenance/status``.
etcd needs no root, so these tests run as any user. The process is stopped by its pid (SIGTERM,
then SIGKILL after a grace period), never by name; its stderr goes to ``<dir>/etcd.log``, which
a failed start prints.

Ports: we ask the kernel for free ports (bind to port 0, read it, close) and hand them to etcd.
Another process could take one in between; start_etcd then retries with fresh ports.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ETCD_BINARY = "etcd"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EtcdProcess:
    proc: subprocess.Popen[bytes]
    endpoint: str
    data_dir: Path
    log_path: Path
    argv: list[str]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM by pid, wait; SIGKILL if it does not exit in ``timeout``."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive():
            try:
                r = httpx.post(f"{self.endpoint}/v3/maintenance/status", json={}, timeout=1.0)
                if r.status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        return False

    def restart(self, timeout: float = 20.0) -> None:
        """Start etcd again on the same data dir and ports (after ``stop`` or ``kill``)."""
        if self.alive():
            raise RuntimeError(f"etcd pid {self.proc.pid} is still running")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        if not self.wait_ready(timeout):
            tail = self.log_tail()
            self.stop()
            raise RuntimeError(f"etcd did not come back; last log lines:\n{tail}")

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def start_etcd(tmp_path: Path, *, name: str = "kltest", timeout: float = 20.0) -> EtcdProcess:
    """Start etcd with its data under ``tmp_path/etcd-<name>``; return once it serves requests."""
    binary = shutil.which(ETCD_BINARY) or "/usr/bin/etcd"
    if not os.path.exists(binary):
        raise RuntimeError("etcd is not installed (Debian package etcd-server; `make deps` installs it)")
    last_error = ""
    for _attempt in range(3):
        client_port, peer_port = free_port(), free_port()
        base = tmp_path / f"etcd-{name}-{client_port}"
        data_dir = base / "data"
        data_dir.mkdir(parents=True)
        os.chmod(base, 0o700)
        log_path = base / "etcd.log"
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        argv = [
            binary,
            "--name", name,
            "--data-dir", str(data_dir),
            "--listen-client-urls", client_url,
            "--advertise-client-urls", client_url,
            "--listen-peer-urls", peer_url,
            "--initial-advertise-peer-urls", peer_url,
            "--initial-cluster", f"{name}={peer_url}",
            "--initial-cluster-state", "new",
            "--log-outputs", "stderr",
            "--logger", "zap",
        ]  # fmt: skip
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        etcd = EtcdProcess(proc, client_url, data_dir, log_path, argv)
        if etcd.wait_ready(timeout):
            return etcd
        last_error = etcd.log_tail()
        etcd.stop()
        if "address already in use" not in last_error:
            break
    raise RuntimeError(f"etcd did not become ready; last log lines:\n{last_error}")
