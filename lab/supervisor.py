"""The lab's process supervisor: what systemd is on the Vagrant VMs.

Role: start every component of the one-machine lab inside its node's network namespace, restart
any that dies (with exponential back-off), stop a node's components on request (``kubelab node
stop``) and everything on shutdown. ``kubelab up`` starts it as a detached process
(``python -m lab.supervisor --config FILE``); ``kubelab status|node|down`` talk to it over a unix
socket with one JSON line per request.

Invariants:
- A component is started with ``nsenter --net=/var/run/netns/<node>`` (network namespace only: the
  mount namespace stays the host's, so netns, overlay mounts and runc state made by a node agent
  are visible to the host and to ``kubelab down``). nsenter execs the component, so the pid we hold
  is the component's own: every stop is by that pid.
- Each component gets its own session (``start_new_session``) and its output goes to its log file
  (never a pipe: a container inheriting a pipe would keep it open forever).
- While the supervisor lives it holds the root-namespace safety routes (``lab.safety``).

Concurrency: one thread runs the monitor loop (reaps children, restarts them when due); the
socket server thread only changes wishes (``wanted``) under a lock and the monitor acts on them, so
process state has one writer.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("kubelab.supervisor")

BACKOFF_START = 1.0
BACKOFF_MAX = 30.0
HEALTHY_AFTER = 60.0  # a component up this long has its back-off reset
STOP_TIMEOUT = 10.0


@dataclass
class Component:
    name: str  # e.g. "noded"
    node: str  # netns / node name, e.g. "kl-node1"
    argv: list[str]
    log_path: str
    env: dict[str, str] = field(default_factory=dict)
    netns: bool = True  # run inside the node's network namespace
    # runtime state (owned by the monitor thread)
    pid: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = BACKOFF_START
    next_start: float = 0.0
    wanted: bool = True
    last_exit: int | None = None
    kill_on_stop: bool = False  # the next stop is SIGKILL at once (a node's power failing), not SIGTERM

    @property
    def key(self) -> str:
        return f"{self.node}/{self.name}"

    def to_status(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "name": self.name,
            "pid": self.pid,
            "running": self.pid is not None,
            "wanted": self.wanted,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "log": self.log_path,
            "argv": self.argv,
        }


class Supervisor:
    def __init__(self, components: list[Component], socket_path: Path) -> None:
        self.components = components
        self.socket_path = socket_path
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.done = threading.Event()

    # -- process control (monitor thread only) --------------------------------------------

    def _start(self, c: Component) -> None:
        Path(c.log_path).parent.mkdir(parents=True, exist_ok=True)
        argv = c.argv
        if c.netns:
            argv = ["nsenter", f"--net=/var/run/netns/{c.node}", "--", *argv]
        env = {**os.environ, **c.env}
        with open(c.log_path, "ab", buffering=0) as out:
            out.write(f"--- kubelab supervisor: starting {c.key}: {' '.join(c.argv)}\n".encode())
            c.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env, start_new_session=True
            )
        c.pid = c.proc.pid
        c.started_at = time.monotonic()
        log.info("started %s pid=%d", c.key, c.pid)

    def _stop(self, c: Component, timeout: float = STOP_TIMEOUT) -> None:
        if c.proc is None:
            return
        proc = c.proc
        try:
            if c.kill_on_stop:
                c.kill_on_stop = False
                proc.kill()
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s pid=%d ignored SIGTERM for %.0fs: SIGKILL", c.key, proc.pid, timeout)
            proc.kill()
            proc.wait()
        except ProcessLookupError:
            pass
        c.last_exit = proc.returncode
        log.info("stopped %s pid=%d exit=%s", c.key, proc.pid, proc.returncode)
        c.proc = None
        c.pid = None

    def _reap_and_restart(self) -> None:
        now = time.monotonic()
        with self.lock:
            for c in self.components:
                if c.proc is not None and c.proc.poll() is not None:
                    c.last_exit = c.proc.returncode
                    uptime = now - c.started_at
                    log.warning("%s pid=%d exited with %s after %.1fs", c.key, c.proc.pid, c.last_exit, uptime)
                    c.proc = None
                    c.pid = None
                    if uptime >= HEALTHY_AFTER:
                        c.backoff = BACKOFF_START
                    c.next_start = now + c.backoff
                    c.backoff = min(c.backoff * 2, BACKOFF_MAX)
                    c.restarts += 1
                if c.wanted and c.proc is None and now >= c.next_start:
                    try:
                        self._start(c)
                    except OSError as exc:
                        log.error("cannot start %s: %s", c.key, exc)
                        c.next_start = now + c.backoff
                        c.backoff = min(c.backoff * 2, BACKOFF_MAX)
                elif not c.wanted and c.proc is not None:
                    self._stop(c)

    def run(self) -> None:
        server = self._serve()
        try:
            while not self.stopping.is_set():
                self._reap_and_restart()
                self.stopping.wait(0.2)
        finally:
            with self.lock:
                for c in reversed(self.components):
                    c.wanted = False
                    self._stop(c)
            server.shutdown()
            server.server_close()
            self.socket_path.unlink(missing_ok=True)
            self.done.set()

    # -- requests (socket thread) -------------------------------------------------------------

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        cmd = request.get("cmd")
        if cmd == "status":
            with self.lock:
                return {"ok": True, "pid": os.getpid(), "components": [c.to_status() for c in self.components]}
        if cmd in ("stop-node", "start-node"):
            node = str(request.get("node", ""))
            names = request.get("names")  # optional: only these components of the node (kubelab backup)
            with self.lock:
                mine = [c for c in self.components if c.node == node and (not names or c.name in names)]
                if not mine:
                    return {"ok": False, "error": f"no components on node {node!r}"}
                for c in mine:
                    c.wanted = cmd == "start-node"
                    c.kill_on_stop = cmd == "stop-node" and bool(request.get("kill"))
                    c.next_start = 0.0
                    c.backoff = BACKOFF_START
            if cmd == "stop-node":
                # wait until the monitor has stopped them, so the caller can rely on it
                deadline = time.monotonic() + STOP_TIMEOUT + 5
                while time.monotonic() < deadline and any(c.pid for c in mine):
                    time.sleep(0.05)
            return {"ok": True}
        if cmd == "shutdown":
            self.stopping.set()
            self.done.wait(STOP_TIMEOUT * len(self.components) + 10)
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd!r}"}

    def _serve(self) -> socketserver.UnixStreamServer:
        supervisor = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                line = self.rfile.readline()
                try:
                    answer = supervisor.handle(json.loads(line))
                except (ValueError, TypeError) as exc:
                    answer = {"ok": False, "error": f"bad request: {exc}"}
                self.wfile.write(json.dumps(answer).encode() + b"\n")

        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self.socket_path.unlink(missing_ok=True)
        server = socketserver.ThreadingUnixStreamServer(str(self.socket_path), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="supervisor-socket", daemon=True).start()
        return server


def request(socket_path: Path, payload: dict[str, Any], timeout: float = 120.0) -> dict[str, Any]:
    """Send one request to a running supervisor; raises OSError when none is listening."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(socket_path))
        s.sendall(json.dumps(payload).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    answer: dict[str, Any] = json.loads(data or b"{}")
    return answer


def load_components(config: dict[str, Any]) -> list[Component]:
    return [
        Component(
            name=c["name"],
            node=c["node"],
            argv=list(c["argv"]),
            log_path=c["log"],
            env=dict(c.get("env", {})),
            netns=bool(c.get("netns", True)),
            wanted=bool(c.get("wanted", True)),
        )
        for c in config["components"]
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.supervisor")
    parser.add_argument("--config", required=True, help="the lab's JSON plan (components to run)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    config = json.loads(Path(args.config).read_text())
    from lab import safety

    marker = safety.acquire("lab-supervisor")
    sup = Supervisor(load_components(config), Path(config["socket"]))
    signal.signal(signal.SIGTERM, lambda *_: sup.stopping.set())
    signal.signal(signal.SIGINT, lambda *_: sup.stopping.set())
    try:
        sup.run()
    finally:
        safety.release(marker)
    return 0


if __name__ == "__main__":
    sys.exit(main())
