"""Run a child program with stdin bytes, capturing stdout (and optionally stderr), without
importing :mod:`subprocess` (~15 ms: it pulls in ``selectors``, ``threading``, ``signal``...).

Used on the plugin's exec path for the spec's delegation (exec'ing the IPAM plugin found on
``CNI_PATH``) and for ``iptables-restore``/``iptables-save``. Inputs and outputs are small (a few
KiB), so the parent writes all of stdin first and then reads stdout to EOF; larger inputs would
need a poll loop, which none of our callers send. Pipes are close-on-exec except in the child.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # no `typing` at run time on the exec path: netplugin/fast/README.md
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


def find_executable(name: str, path: Sequence[str]) -> str | None:
    for d in path:
        cand = os.path.join(d, name)
        if os.path.isfile(cand) and os.access(cand, os.X_OK):
            return cand
    return None


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        b = os.read(fd, 65536)
        if not b:
            break
        chunks.append(b)
    os.close(fd)
    return b"".join(chunks)


def run(
    argv: Sequence[str],
    stdin: bytes = b"",
    env: Mapping[str, str] | None = None,
    capture_stderr: bool = False,
) -> tuple[int, bytes, bytes]:
    """Run ``argv`` (PATH lookup for a bare name); return (exit status, stdout, stderr).

    stderr is passed through to ours unless ``capture_stderr`` (the spec: a delegated plugin's
    stderr is the runtime's to see). A missing program gives exit status 127, like a shell.
    """
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe() if capture_stderr else (-1, -1)
    pid = os.fork()
    if pid == 0:  # child: wire the pipes to 0/1/2 and exec; never return into the plugin
        try:
            os.dup2(in_r, 0)
            os.dup2(out_w, 1)
            if capture_stderr:
                os.dup2(err_w, 2)
            for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
                if fd > 2:
                    os.close(fd)
            if env is None:
                os.execvp(argv[0], list(argv))
            else:
                os.execvpe(argv[0], list(argv), dict(env))
        except OSError as exc:
            os.write(2, f"exec {argv[0]}: {exc.strerror}\n".encode())
        os._exit(127)
    os.close(in_r)
    os.close(out_w)
    if capture_stderr:
        os.close(err_w)
    try:
        if stdin:
            os.write(in_w, stdin)
    except BrokenPipeError:
        pass  # the child exited without reading; its status says why
    finally:
        os.close(in_w)
    out = _read_all(out_r)
    err = _read_all(err_r) if capture_stderr else b""
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out, err
