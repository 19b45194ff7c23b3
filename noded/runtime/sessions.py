"""Streaming sessions on runc containers: ``exec`` (with or without a terminal) and ``attach``.

Role: what the kubelet API (``noded.server``) drives for ``kubectl exec`` and ``kubectl attach``;
``RuncRuntime.exec``/``attach`` (``runc.py``) make them. The layout they rely on (the shim's
``attach`` socket, ``exec-<rand>.sock`` console sockets) is described in ``runc.py``'s docstring.

- ``RuncExecSession``: ``runc exec`` without a terminal; stdout and stderr pumped by two threads.
- ``RuncTtyExecSession``: ``runc exec --tty`` under the shim's exec mode; noded holds the pty master.
- ``RuncAttachSession``: the shim's attach socket; the stdin end arrives over SCM_RIGHTS.

Concurrency: each session is used by one stream handler, whose reader and writer threads may call
``write_stdin``/``resize`` and ``output`` at once; stdin writes never block a close (``_write_stdin``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import select
import signal
import socket
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from noded.runtime.interface import AttachUnavailable, RuntimeOpError


class RuncExecSession:
    """``runc exec`` as a child process with pipes (exec'd processes are not detached, so the
    pipes close when the process and its children exit)."""

    def __init__(self, argv: list[str], stdin: bool) -> None:
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._q: queue.Queue[tuple[int, bytes] | None] = queue.Queue()
        self._open = 2
        for ch, f in ((1, self.proc.stdout), (2, self.proc.stderr)):
            threading.Thread(target=self._pump, args=(ch, f), daemon=True).start()

    def _pump(self, ch: int, f: Any) -> None:
        try:
            while chunk := f.read1(65536):
                self._q.put((ch, chunk))
        finally:
            self._q.put(None)

    def write_stdin(self, data: bytes) -> None:
        if self.proc.stdin:
            with contextlib.suppress(BrokenPipeError, ValueError):
                self.proc.stdin.write(data)
                self.proc.stdin.flush()

    def close_stdin(self) -> None:
        if self.proc.stdin:
            with contextlib.suppress(BrokenPipeError, ValueError):
                self.proc.stdin.close()

    def output(self) -> Iterator[tuple[int, bytes]]:
        while self._open:
            item = self._q.get()
            if item is None:
                self._open -= 1
                continue
            yield item

    def resize(self, width: int, height: int) -> None:
        """No terminal, nothing to resize."""

    def wait(self) -> int:
        return self.proc.wait()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()


def set_winsize(fd: int, width: int, height: int) -> None:
    """TIOCSWINSZ: the terminal's new size; the kernel sends SIGWINCH to its foreground group."""
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))


class RuncTtyExecSession:
    """``runc exec --tty`` whose terminal master noded holds (see the module docstring).

    Life: bind a console socket ``exec-<rand>.sock`` in the container's directory; start the shim
    in exec mode (``-x pid -- runc exec --detach --tty --console-socket /proc/<us>/fd/<dir>/…``);
    accept runc's connection and take the master from its SCM_RIGHTS message. Output is read
    from the master until EIO (no process holds the terminal any more); the exit code is the
    shim's. The socket and pid file are removed once the session ends."""

    def __init__(self, shim: Path, runc: list[str], bundle: Path, container_id: str, argv: Sequence[str]) -> None:
        name = f"exec-{os.urandom(6).hex()}"
        self.sock_path, self.pid_path = bundle / f"{name}.sock", bundle / f"{name}.pid"
        self.master = -1
        self._done = False
        self._stderr = b""
        # Guards ``master`` against the client's thread: once closed, its number may be reused.
        self._lock = threading.Lock()
        self._reading = False
        self._read_done = threading.Event()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        dfd = os.open(bundle, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            listener.bind(f"/proc/self/fd/{dfd}/{name}.sock")  # short, whatever the bundle's path
            listener.listen(1)
            self.proc = subprocess.Popen(
                [str(shim), "-x", str(self.pid_path), "--", *runc, "exec", "--detach", "--tty",
                 "--console-socket", f"/proc/{os.getpid()}/fd/{dfd}/{name}.sock", "--pid-file", str(self.pid_path),
                 container_id, *argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )  # fmt: skip
            self.master = self._receive_master(listener)
            os.set_blocking(self.master, False)  # writes must not hold the lock while blocked
        except BaseException:
            self._cleanup()
            raise
        finally:
            os.close(dfd)
            listener.close()
            with contextlib.suppress(OSError):
                self.sock_path.unlink()

    def _receive_master(self, listener: socket.socket) -> int:
        listener.settimeout(0.05)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            exited = self.proc.poll() is not None
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                if exited:  # runc failed before sending (its connection would be queued already)
                    break
                continue
            with conn:
                conn.settimeout(10)
                _msg, fds, _flags, _addr = socket.recv_fds(conn, 64, 1)
            if fds:
                return fds[0]
            break
        try:
            _out, err = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            err = b""
        raise RuntimeOpError(err.decode(errors="replace").strip() or "runc exec sent no terminal")

    def write_stdin(self, data: bytes) -> None:
        _write_stdin(self._lock, lambda: self.master, data)

    def close_stdin(self) -> None:
        # A terminal has no "close": type its end-of-file character, as a user would.
        with self._lock, contextlib.suppress(OSError):
            if self.master >= 0:
                os.write(self.master, bytes([termios.tcgetattr(self.master)[6][termios.VEOF][0]]))

    def resize(self, width: int, height: int) -> None:
        with self._lock, contextlib.suppress(OSError):
            if self.master >= 0:
                set_winsize(self.master, width, height)

    def output(self) -> Iterator[tuple[int, bytes]]:
        self._reading = True
        try:
            yield from self._output()
        finally:
            self._read_done.set()

    def _output(self) -> Iterator[tuple[int, bytes]]:
        while self.master >= 0:
            readable, _, _ = select.select([self.master], [], [], 0.2)
            if not readable:
                # The session ends with its process, like the kubelet's: a background job that
                # still holds the terminal does not keep the client waiting.
                if self.proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(self.master, 65536)
            except BlockingIOError:
                continue
            except OSError:  # EIO: every holder of the terminal's slave side is gone
                break
            if not chunk:
                break
            yield 1, chunk
        # runc's own complaint (e.g. the command does not exist) goes to the terminal, which is
        # what a user of a terminal sees.
        self.proc.wait()
        if self.proc.stderr:
            self._stderr = self.proc.stderr.read()
        if self.proc.returncode and self._stderr:
            yield 1, self._stderr

    def wait(self) -> int:
        code = self.proc.wait()
        if self._reading:  # let the reader drain the terminal before it is closed
            self._read_done.wait(5)
        self._cleanup()
        return code

    def kill(self) -> None:
        """Hang the terminal up: the exec'd process gets SIGHUP, as when a terminal closes."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(self.pid_path.read_text().strip()), signal.SIGHUP)

    def _cleanup(self) -> None:
        if self._done:
            return
        self._done = True
        with self._lock:
            if self.master >= 0:
                with contextlib.suppress(OSError):
                    os.close(self.master)
                self.master = -1
        proc = getattr(self, "proc", None)
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()
        with contextlib.suppress(OSError):
            self.pid_path.unlink()


class RuncAttachSession:
    """A connection to a container shim's attach socket (protocol in noded/shim/shim.c)."""

    def __init__(self, bundle: Path, stdin: bool, tty: bool) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.fd = -1
        try:
            dfd = os.open(bundle, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            self.sock.close()
            raise AttachUnavailable(f"container directory {bundle} is gone") from exc
        try:
            self.sock.settimeout(10)
            self.sock.connect(f"/proc/self/fd/{dfd}/attach")
            self.sock.sendall(bytes([(1 if stdin else 0) | (2 if tty else 0)]))
            msg, fds, _flags, _addr = socket.recv_fds(self.sock, 1, 1)
        except OSError as exc:
            self.sock.close()
            raise AttachUnavailable(f"the container's shim serves no attach socket: {exc}") from exc
        finally:
            os.close(dfd)
        if not msg:
            self.sock.close()
            raise AttachUnavailable("the container's shim closed the attach socket")
        self.sock.settimeout(None)
        self.tty = bool(msg[0] & 1)
        self.stdin = bool(msg[0] & 2)
        self.fd = fds[0] if fds else -1
        if self.fd >= 0:
            # Shared with the shim (which never writes it; a terminal's master is already so).
            os.set_blocking(self.fd, False)
        self._lock = threading.Lock()

    def write_stdin(self, data: bytes) -> None:
        if self.stdin:
            _write_stdin(self._lock, lambda: self.fd, data)

    def close_stdin(self) -> None:
        """The client's stdin ended. A pipe: drop our end (the container sees EOF once the shim
        drops its own, i.e. with ``stdinOnce`` when we detach). A terminal: type end-of-file."""
        with self._lock:
            if not self.stdin or self.fd < 0:
                return
            if self.tty:
                with contextlib.suppress(OSError):
                    os.write(self.fd, bytes([termios.tcgetattr(self.fd)[6][termios.VEOF][0]]))
                return
            os.close(self.fd)
            self.fd = -1

    def resize(self, width: int, height: int) -> None:
        with self._lock:
            if self.tty and self.fd >= 0:
                with contextlib.suppress(OSError):
                    set_winsize(self.fd, width, height)

    def _recv_exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except OSError:
                return b""
            if not chunk:
                return b""
            buf += chunk
        return buf

    def output(self) -> Iterator[tuple[int, bytes]]:
        while True:
            head = self._recv_exact(5)
            if len(head) < 5:
                return
            size = struct.unpack("!I", head[1:])[0]
            data = self._recv_exact(size)
            if len(data) < size:
                return
            yield head[0], data

    def detach(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        # Our stdin end first: with stdinOnce the shim closes its own when it sees us go, and the
        # container gets EOF only once no copy of the pipe's write end is left.
        with self._lock:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
        self.sock.close()


def _write_stdin(lock: threading.Lock, fd_of: Callable[[], int], data: bytes) -> None:
    """Write all of ``data`` to a non-blocking stdin descriptor that another thread may close
    (``fd_of`` returns -1 then): wait for room outside the lock, write under it, so a process
    that does not read its stdin never keeps a session from closing."""
    view = memoryview(data)
    while view:
        with lock:
            fd = fd_of()
            if fd < 0:
                return
            try:
                view = view[os.write(fd, view) :]
                continue
            except BlockingIOError:
                pass
            except OSError:  # the reader is gone
                return
        with contextlib.suppress(OSError, ValueError):
            select.select([], [fd], [], 0.2)
