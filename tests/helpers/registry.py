"""A real OCI registry for tests: Debian's ``docker-registry`` (distribution 2.8) on loopback.

``start_registry(tmp_path)`` writes a config with a filesystem store under ``tmp_path``, starts the
registry on ``127.0.0.1:<free port>`` (plain HTTP, so every client needs its insecure switch),
waits for ``/v2/`` and returns a ``Registry``; ``.stop()`` ends it by pid. ``.push(layout, repo)``
copies an OCI layout (tag ``latest``) into it with skopeo.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import httpx

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

    def push(self, oci_layout: str | Path, repository: str) -> str:
        """Push ``oci_layout:latest`` as ``<address>/<repository>``; return the full reference."""
        ref = f"{self.address}/{repository}"
        res = subprocess.run(
            [
                "skopeo",
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                f"oci:{oci_layout}:latest",
                f"docker://{ref}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            raise AssertionError(f"skopeo push of {oci_layout} to {ref} failed: {res.stderr}")
        return ref

    def stop(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)


def start_registry(tmp_path: Path, host: str = "127.0.0.1") -> Registry:
    root = tmp_path / "registry"
    storage = root / "storage"
    storage.mkdir(parents=True, exist_ok=True)
    port = free_port(host)
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: error\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {storage}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {host}:{port}\n"
    )
    log = open(root / "registry.log", "wb")  # noqa: SIM115 - owned by the child process
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    reg = Registry(address=f"{host}:{port}", process=proc, storage=storage)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"registry exited: {(root / 'registry.log').read_text()}")
        return httpx.get(f"http://{reg.address}/v2/", timeout=1).status_code == 200

    try:
        wait_for(up, timeout=15, message="registry /v2/")
    except BaseException:
        reg.stop()
        raise
    return reg
