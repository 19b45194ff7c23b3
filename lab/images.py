"""The lab's container images, built offline from Debian's busybox-static (DESIGN.md §3).

Role: produce OCI image layouts (one directory per image, tag ``latest``) that a real registry
can serve and noded can pull, without any network:

- ``pause``: a tiny static C program (``noded/pause/pause.c``, compiled here with ``gcc -static
  -Os``) that holds a pod's namespaces, exits at once on SIGTERM/SIGINT and reaps zombies.
- ``busybox``: the static busybox with every applet symlinked (``/bin/sh``, ``/bin/sleep``, ...).
- ``hello``: busybox plus a second layer: ``busybox httpd`` on :8080 whose CGI answers
  ``Hello from <POD_NAME> on <NODE_NAME>`` (POD_NAME/NODE_NAME come from the downward API in
  the demo manifest; without them the hostname, which noded sets to the pod name). Its PID 1 is
  the pause binary used as an init, so SIGTERM ends the container at once (httpd as PID 1 would
  ignore it and wait out the grace period).

Builds are cached: each layout holds a stamp with the hash of every input (busybox binary,
pause source, this builder's recipe), so a second call returns at once.

Tools: ``umoci`` (init, new, insert, config, gc) builds the layouts; ``skopeo`` pushes them.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

BUSYBOX = Path("/bin/busybox")
PAUSE_SOURCE = Path(__file__).resolve().parent.parent / "noded" / "pause" / "pause.c"
# Bump when the recipe below changes, so cached layouts are rebuilt.
RECIPE_VERSION = "5"
IMAGE_NAMES = ("pause", "busybox", "hello")
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Registry repository names the lab uses (DESIGN.md §3).
REPOSITORIES: Mapping[str, str] = {
    "pause": "kubelab/pause:latest",
    "hello": "kubelab/hello:latest",
    "busybox": "library/busybox:latest",
}

HELLO_CGI = """#!/bin/sh
# kubelab hello: answer with the pod's and the node's name (downward API env, else hostname).
printf 'Content-Type: text/plain\\r\\n\\r\\n'
echo "Hello from ${POD_NAME:-$(hostname)} on ${NODE_NAME:-unknown}"
"""


class ImageBuildError(Exception):
    """A build step failed; the message names the step and carries the tool's stderr."""


def _run(argv: Sequence[str], cwd: Path | None = None) -> str:
    res = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, check=False, stdin=subprocess.DEVNULL)
    if res.returncode != 0:
        raise ImageBuildError(f"{' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def _input_hash(name: str) -> str:
    h = hashlib.sha256()
    h.update(f"recipe={RECIPE_VERSION};image={name};".encode())
    h.update(hashlib.sha256(BUSYBOX.read_bytes()).digest())
    h.update(PAUSE_SOURCE.read_bytes())
    h.update(HELLO_CGI.encode())
    return h.hexdigest()


def compile_pause(out: Path) -> Path:
    """Compile the static pause binary to ``out`` (gcc -static -Os, stripped)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _run(["gcc", "-static", "-Os", "-s", "-o", str(out), str(PAUSE_SOURCE)])
    return out


def _busybox_rootfs(root: Path) -> None:
    """A full busybox userland: the binary, every applet as a symlink, /etc basics."""
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "tmp", "root", "proc", "sys", "dev", "var"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in _run([str(BUSYBOX), "--list-full"]).split():
        target = root / applet
        if target.exists() or target.is_symlink():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to("/bin/busybox")
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n")


def _new_layout(layout: Path) -> str:
    ref = f"{layout}:latest"
    _run(["umoci", "init", "--layout", str(layout)])
    _run(["umoci", "new", "--image", ref])
    return ref


def _config(ref: str, *args: str) -> None:
    _run(["umoci", "config", "--image", ref, "--os", "linux", "--architecture", "amd64", *args])


def _add_layer(ref: str, work: Path, populate: Callable[[Path], None]) -> None:
    """Add one layer holding what ``populate(rootfs)`` writes on top of the image.

    unpack + repack (umoci diffs the bundle against its mtree) rather than ``umoci insert``:
    umoci 0.4.7's insert writes a tar stream without its end-of-archive blocks.
    """
    bundle = work / "bundle"
    _run(["umoci", "unpack", "--image", ref, str(bundle)])
    populate(bundle / "rootfs")
    _run(["umoci", "repack", "--image", ref, str(bundle)])
    shutil.rmtree(bundle)


def _pause_files(root: Path) -> None:
    compile_pause(root / "pause")


def _build_pause(layout: Path, work: Path) -> None:
    ref = _new_layout(layout)
    _add_layer(ref, work, _pause_files)
    _config(ref, "--config.entrypoint", "/pause", "--config.workingdir", "/")


def _build_busybox(layout: Path, work: Path) -> None:
    ref = _new_layout(layout)
    _add_layer(ref, work, _busybox_rootfs)
    _config(ref, "--config.cmd", "sh", "--config.env", DEFAULT_PATH_ENV, "--config.workingdir", "/")


def _build_hello(layout: Path, busybox_layout: Path, work: Path) -> None:
    # hello = the busybox layer (shared, same digest) + one small layer of its own.
    shutil.copytree(busybox_layout, layout, symlinks=True)
    (layout / ".kubelab-hash").unlink(missing_ok=True)
    ref = f"{layout}:latest"

    def hello_files(root: Path) -> None:
        (root / "www" / "cgi-bin").mkdir(parents=True)
        compile_pause(root / "pause")
        cgi = root / "www" / "cgi-bin" / "index.cgi"
        cgi.write_text(HELLO_CGI)
        cgi.chmod(0o755)
        (root / "www" / "healthz").write_text("ok\n")

    _add_layer(ref, work, hello_files)
    _config(
        ref,
        "--clear=config.cmd",
        "--config.entrypoint",
        "/pause",
        "--config.cmd",
        "/bin/busybox",
        "--config.cmd",
        "httpd",
        "--config.cmd",
        "-f",
        "--config.cmd",
        "-p",
        "--config.cmd",
        "8080",
        "--config.cmd",
        "-h",
        "--config.cmd",
        "/www",
        "--config.exposedports",
        "8080/tcp",
    )
    _run(["umoci", "gc", "--layout", str(layout)])


def build_lab_images(out_dir: str | Path) -> dict[str, Path]:
    """Build (or reuse from cache) the lab images; return {name: OCI layout path} (tag latest)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Path] = {}
    for name in ("pause", "busybox", "hello"):
        layout = out / name
        want = _input_hash(name)
        stamp = layout / ".kubelab-hash"
        if stamp.exists() and stamp.read_text() == want:
            result[name] = layout
            continue
        log.info("building image %s into %s", name, layout)
        with tempfile.TemporaryDirectory(prefix=f"kubelab-img-{name}-", dir=out) as tmp:
            work = Path(tmp)
            staged = work / "layout"
            if name == "pause":
                _build_pause(staged, work)
            elif name == "busybox":
                _build_busybox(staged, work)
            else:
                _build_hello(staged, result["busybox"], work)
            (staged / ".kubelab-hash").write_text(want)
            # Replace atomically enough: the old layout goes only once the new one is complete.
            if layout.exists():
                shutil.rmtree(layout)
            os.replace(staged, layout)
        result[name] = layout
    return result


def push_image(layout: str | Path, registry: str, repository: str, *, tls_verify: bool = False) -> None:
    """Push one OCI layout (tag latest) to ``registry/repository`` with skopeo."""
    _run(
        [
            "skopeo",
            "copy",
            "--quiet",
            f"--dest-tls-verify={'true' if tls_verify else 'false'}",
            f"oci:{layout}:latest",
            f"docker://{registry}/{repository}",
        ]
    )


def push_images(
    registry: str = "192.168.56.1:5000",
    images: Mapping[str, Path] | None = None,
    out_dir: str | Path = "/var/lib/kubelab/images",
) -> dict[str, str]:
    """Build the lab images if needed and push them; return {name: full image reference}."""
    layouts = dict(images) if images is not None else build_lab_images(out_dir)
    refs: dict[str, str] = {}
    for name, layout in layouts.items():
        repo = REPOSITORIES.get(name, f"kubelab/{name}:latest")
        push_image(layout, registry, repo)
        refs[name] = f"{registry}/{repo}"
    return refs
