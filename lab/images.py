"""The lab's container images, built offline from Debian packages (DESIGN.md §3, issue 15).

Role: produce OCI image layouts (one directory per image, tag ``latest``) that a real registry
can serve and noded can pull, without any network:

- ``pause``: a tiny static C program (``noded/pause/pause.c``, compiled here with ``gcc -static
  -Os``) that holds a pod's namespaces, exits at once on SIGTERM/SIGINT and reaps zombies.
- ``busybox``: the static busybox (Debian's busybox-static) with every applet symlinked.
- ``hello``: busybox plus a second layer: ``busybox httpd`` on :8080 whose CGI answers
  ``Hello from <POD_NAME> on <NODE_NAME>`` (POD_NAME/NODE_NAME come from the downward API in
  the demo manifest; without them the hostname, which noded sets to the pod name). Its PID 1 is
  the pause binary used as an init, so SIGTERM ends the container at once (httpd as PID 1 would
  ignore it and wait out the grace period).
- ``nginx``: busybox plus Debian's nginx, taken from its .deb (``make deps`` downloads it into
  ``.cache/debs``: installing it would start a web server on this machine), with the shared
  libraries its ``ldd`` closure names copied from this host, and the upstream image's layout:
  ``/etc/nginx/conf.d/default.conf`` serving ``/usr/share/nginx/html`` (Debian's "Welcome to
  nginx!" page) on :80, logs to the container's stdout/stderr, ``nginx -g 'daemon off;'``.
- ``python``: busybox plus Debian's python3.11 and its standard library (without the test suite,
  tkinter, idlelib and the static library), the extension modules whose libraries this host has,
  ``python``/``python3`` on PATH: enough for ``python -u script.py``.

Tutorials and the official clients' tests name these images by their upstream names (``nginx``,
``busybox:1.28``, ``registry.k8s.io/pause:3.9``, ``python``): ``REPOSITORIES`` lists, per image,
the repository:tag pairs the lab registry serves; the first is pushed with skopeo, the rest are
tagged inside the registry (a manifest PUT, with cross-repository blob mounts: milliseconds, not a
skopeo run each). ``write_hosts_dirs`` writes the nodes' registry hosts directory (containerd's
``hosts.toml`` model, ``noded/images/mirrors.py``) that sends docker.io, registry.k8s.io and
k8s.gcr.io to the lab registry first, falling back to the real registries. Our images are
amd64 only and not the upstream bytes: the same names, small offline stand-ins.

Builds are cached: each layout holds a stamp with the hash of every input (binaries, package
versions, this builder's recipe), so a second call returns at once.

Tools: ``umoci`` (init, new, unpack, repack, config, gc) builds the layouts; ``skopeo`` pushes
them; ``dpkg-deb`` extracts .debs; ``ldd`` names the shared libraries a binary needs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
BUSYBOX = Path("/bin/busybox")
PAUSE_SOURCE = REPO / "noded" / "pause" / "pause.c"
DEB_CACHE = REPO / ".cache" / "debs"  # lab/deps.sh: the `download` packages of lab/programs.txt
# Where `kubelab up` keeps built layouts: outside the lab's state (which `down` removes), so only
# the first `up` of a checkout builds (python's stdlib layer is most of the ~9 s).
CACHE_DIR = REPO / ".cache" / "images"
PYTHON = Path("/usr/bin/python3.11")
PYTHON_STDLIB = Path("/usr/lib/python3.11")
# Bump when the recipe below changes, so cached layouts are rebuilt.
RECIPE_VERSION = "6"
BASE_IMAGES = ("pause", "busybox", "hello")
TUTORIAL_IMAGES = ("nginx", "python")
IMAGE_NAMES = BASE_IMAGES + TUTORIAL_IMAGES
DEFAULT_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Registry repositories the lab serves, per image: the first is pushed, the others tagged from it.
# kubelab/* are the lab's own names (DESIGN.md §3); the rest are upstream names as the mirror
# config maps them (docker.io/library/nginx -> library/nginx, registry.k8s.io/pause -> pause),
# with the tags of the Kubernetes tutorials and of the official Python client's e2e tests
# (nginx:1.15.4, nginx:1.7.9, nginx:1.10, k8s.gcr.io/pause:2.0, busybox, python).
REPOSITORIES: Mapping[str, tuple[str, ...]] = {
    "pause": (
        "kubelab/pause:latest",
        *(f"pause:{t}" for t in ("latest", "3.10", "3.9", "3.8", "3.7", "3.6", "3.5", "3.2", "3.1", "2.0")),
    ),
    "hello": ("kubelab/hello:latest",),
    "busybox": tuple(
        f"library/busybox:{t}" for t in ("latest", "stable", "1.28", "1.34", "1.35", "1.36", "1.36.1", "1.37")
    ),
    "nginx": tuple(
        f"library/nginx:{t}"
        for t in ("latest", "stable", "1.14.2", "1.15.4", "1.7.9", "1.10", "1.16.1", "1.25", "1.27", "alpine")
    ),
    "python": tuple(f"library/python:{t}" for t in ("latest", "3", "3.11", "3.11-slim", "slim")),
}
# Registries whose names the lab registry answers for (write_hosts_dirs).
MIRRORED_REGISTRIES = ("docker.io", "registry.k8s.io", "k8s.gcr.io")

# The Debian packages whose files an image copies: their versions are part of the cache stamp.
NGINX_DEBS = ("nginx", "nginx-common")
NGINX_LIB_PACKAGES = ("libc6", "libssl3", "libpcre2-8-0", "libcrypt1", "zlib1g")
PYTHON_PACKAGES = (
    "python3.11-minimal",
    "libpython3.11-minimal",
    "libpython3.11-stdlib",
    "libc6",
    "libssl3",
    "zlib1g",
    "libexpat1",
    "libffi8",
    "libsqlite3-0",
    "liblzma5",
    "libbz2-1.0",
    "libmpdec3",
    "libuuid1",
    "libreadline8",
    "libncursesw6",
    "libtinfo6",
    "libgdbm6",
    "libdb5.3",
)
# Parts of the standard library a script in a container does not need (GUI, the test suite, the
# static library and the build config: 27 MB of the 54).
PYTHON_SKIP = frozenset(
    {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "site-packages", "dist-packages", "__phello__"}
)

NGINX_CONF = """user  nginx;
worker_processes  auto;

error_log  /var/log/nginx/error.log notice;
pid        /var/run/nginx.pid;

events {
    worker_connections  1024;
}

http {
    include       /etc/nginx/mime.types;
    default_type  application/octet-stream;
    access_log    /var/log/nginx/access.log;
    sendfile      on;
    keepalive_timeout  65;
    include /etc/nginx/conf.d/*.conf;
}
"""
NGINX_DEFAULT_SERVER = """server {
    listen       80;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }
}
"""

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


def _dpkg_versions(packages: Iterable[str]) -> str:
    """``package=version`` of each installed package (absent ones are left out): one dpkg-query."""
    res = subprocess.run(
        ["dpkg-query", "-W", "-f=${Package}=${Version};", *packages],
        capture_output=True,
        text=True,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    return res.stdout


def nginx_debs() -> list[Path]:
    """The downloaded .debs of nginx and nginx-common (the newest of each), or ImageBuildError."""
    out = []
    for pkg in NGINX_DEBS:
        found = sorted(DEB_CACHE.glob(f"{pkg}_*.deb"))
        if not found:
            raise ImageBuildError(f"{DEB_CACHE}/{pkg}_*.deb is missing: run `make deps` (it downloads the .deb)")
        out.append(found[-1])
    return out


def _input_hash(name: str) -> str:
    h = hashlib.sha256()
    h.update(f"recipe={RECIPE_VERSION};image={name};".encode())
    h.update(hashlib.sha256(BUSYBOX.read_bytes()).digest())
    h.update(PAUSE_SOURCE.read_bytes())
    h.update(HELLO_CGI.encode())
    if name == "nginx":
        h.update(NGINX_CONF.encode() + NGINX_DEFAULT_SERVER.encode())
        h.update(";".join(d.name for d in nginx_debs()).encode())
        h.update(_dpkg_versions(NGINX_LIB_PACKAGES).encode())
    elif name == "python":
        h.update(_dpkg_versions(PYTHON_PACKAGES).encode())
        h.update(str(PYTHON.stat().st_mtime_ns).encode())
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


def _derive(layout: Path, busybox_layout: Path, work: Path, populate: Callable[[Path], None], *config: str) -> None:
    """An image = the busybox layer (shared, same digest) + one layer of its own + ``config``."""
    shutil.copytree(busybox_layout, layout, symlinks=True)
    (layout / ".kubelab-hash").unlink(missing_ok=True)
    ref = f"{layout}:latest"
    _add_layer(ref, work, populate)
    _config(ref, *config)
    _run(["umoci", "gc", "--layout", str(layout)])


def _cmd(*argv: str) -> list[str]:
    """umoci config arguments replacing the image's command with ``argv``."""
    out = ["--clear=config.cmd"]
    for a in argv:
        out += ["--config.cmd", a]
    return out


def _build_hello(layout: Path, busybox_layout: Path, work: Path) -> None:
    def hello_files(root: Path) -> None:
        (root / "www" / "cgi-bin").mkdir(parents=True)
        compile_pause(root / "pause")
        cgi = root / "www" / "cgi-bin" / "index.cgi"
        cgi.write_text(HELLO_CGI)
        cgi.chmod(0o755)
        (root / "www" / "healthz").write_text("ok\n")

    _derive(
        layout,
        busybox_layout,
        work,
        hello_files,
        "--config.entrypoint",
        "/pause",
        *_cmd("/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"),
        "--config.exposedports",
        "8080/tcp",
    )


def ldd_closure(binaries: Iterable[Path]) -> tuple[set[Path], dict[Path, list[str]]]:
    """The shared libraries (and the dynamic loader) ``binaries`` load, as absolute paths; and,
    per binary, the libraries ldd could not find on this host (their modules are left out)."""
    libs: set[Path] = set()
    missing: dict[Path, list[str]] = {}
    for binary in binaries:
        for line in _run(["ldd", str(binary)]).splitlines():
            line = line.strip()
            if "=> not found" in line:
                missing.setdefault(binary, []).append(line.split()[0])
            elif "=>" in line:
                target = line.split("=>", 1)[1].split("(")[0].strip()
                if target:
                    libs.add(Path(target))
            elif line.startswith("/"):  # the loader: "/lib64/ld-linux-x86-64.so.2 (0x...)"
                libs.add(Path(line.split()[0]))
    return libs, missing


def _copy_in(root: Path, src: Path, dest: Path | None = None) -> None:
    """Copy ``src`` (symlinks followed) to the same absolute path (or ``dest``) under ``root``."""
    target = root / (dest or src).relative_to("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, target, follow_symlinks=True)


def _users(root: Path, extra: str = "") -> None:
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n" + extra
    )
    groups = "".join(f"{u.split(':')[0]}:x:{u.split(':')[3]}:\n" for u in extra.splitlines())
    (root / "etc" / "group").write_text("root:x:0:\nnogroup:x:65534:\n" + groups)


def _nginx_files(root: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="kubelab-nginx-deb-") as tmp:
        x = Path(tmp)
        for deb in nginx_debs():
            _run(["dpkg-deb", "-x", str(deb), str(x)])
        nginx = x / "usr" / "sbin" / "nginx"
        _copy_in(root, nginx, Path("/usr/sbin/nginx"))
        libs, missing = ldd_closure([nginx])
        if missing:
            raise ImageBuildError(f"nginx needs libraries this host lacks: {missing[nginx]} (run `make deps`)")
        for lib in libs:
            _copy_in(root, lib)
        etc = root / "etc" / "nginx"
        for name in ("mime.types", "fastcgi_params", "scgi_params", "uwsgi_params", "fastcgi.conf"):
            _copy_in(root, x / "etc" / "nginx" / name, Path("/etc/nginx") / name)
        (etc / "conf.d").mkdir(parents=True, exist_ok=True)
        (etc / "nginx.conf").write_text(NGINX_CONF)
        (etc / "conf.d" / "default.conf").write_text(NGINX_DEFAULT_SERVER)
        _copy_in(root, x / "usr" / "share" / "nginx" / "html" / "index.html", Path("/usr/share/nginx/html/index.html"))
    # The compiled-in paths of Debian's build (nginx -V): temp dirs, logs (opened before the config
    # is read, so they must exist), the pid file's directory.
    for d in ("var/lib/nginx/body", "var/lib/nginx/proxy", "var/lib/nginx/fastcgi", "var/lib/nginx/uwsgi",
              "var/lib/nginx/scgi", "var/log/nginx", "var/cache/nginx", "var/run", "run"):  # fmt: skip
        (root / d).mkdir(parents=True, exist_ok=True)
    # As in the upstream image: logs go to the container's output (kubectl logs).
    (root / "var" / "log" / "nginx" / "access.log").symlink_to("/dev/stdout")
    (root / "var" / "log" / "nginx" / "error.log").symlink_to("/dev/stderr")
    _users(root, "nginx:x:101:101:nginx:/nonexistent:/bin/false\n")


def _build_nginx(layout: Path, busybox_layout: Path, work: Path) -> None:
    _derive(
        layout,
        busybox_layout,
        work,
        _nginx_files,
        *_cmd("nginx", "-g", "daemon off;"),
        "--config.exposedports",
        "80/tcp",
        "--config.stopsignal",
        "SIGQUIT",
    )


def _python_stdlib(root: Path) -> list[Path]:
    """Copy the standard library (bytecode of the default optimisation level kept, so imports need
    not compile); return the extension modules copied."""
    extensions: list[Path] = []
    for dirpath, dirs, files in os.walk(PYTHON_STDLIB):
        rel = Path(dirpath).relative_to(PYTHON_STDLIB)
        if rel == Path("."):
            dirs[:] = [d for d in dirs if d not in PYTHON_SKIP and not d.startswith("config-")]
        for f in files:
            if rel.name == "__pycache__" and not f.endswith(".cpython-311.pyc"):
                continue  # opt-1/opt-2 bytecode: python -O only
            src = Path(dirpath) / f
            _copy_in(root, src)
            if f.endswith(".so"):
                extensions.append(src)
    return extensions


def _python_files(root: Path) -> None:
    _copy_in(root, PYTHON)
    extensions = _python_stdlib(root)
    libs, missing = ldd_closure([PYTHON, *extensions])
    if PYTHON in missing:
        raise ImageBuildError(f"python3.11 needs libraries this host lacks: {missing[PYTHON]}")
    for ext, names in missing.items():  # an extension whose library is absent would fail on import anyway
        log.info("python image: leaving out %s (needs %s)", ext.name, ", ".join(names))
        (root / ext.relative_to("/")).unlink()
    for lib in libs:
        _copy_in(root, lib)
    for d in ("usr/bin", "usr/local/bin"):
        (root / d).mkdir(parents=True, exist_ok=True)
        for alias in ("python", "python3"):
            link = root / d / alias
            if link.exists() or link.is_symlink():
                link.unlink()
            link.symlink_to("/usr/bin/python3.11")


def _build_python(layout: Path, busybox_layout: Path, work: Path) -> None:
    _derive(
        layout,
        busybox_layout,
        work,
        _python_files,
        *_cmd("python3"),
        "--config.env",
        "LANG=C.UTF-8",
        "--config.env",
        "PYTHONDONTWRITEBYTECODE=1",
    )


def build_lab_images(out_dir: str | Path, names: Sequence[str] = BASE_IMAGES) -> dict[str, Path]:
    """Build (or reuse from cache) the lab images ``names`` (the base three by default, every
    image with ``IMAGE_NAMES``); return {name: OCI layout path} (tag latest)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Path] = {}
    wanted = [n for n in IMAGE_NAMES if n in names or n == "busybox"]  # busybox: the others' base
    for name in wanted:
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
            elif name == "hello":
                _build_hello(staged, result["busybox"], work)
            elif name == "nginx":
                _build_nginx(staged, result["busybox"], work)
            else:
                _build_python(staged, result["busybox"], work)
            (staged / ".kubelab-hash").write_text(want)
            # Replace atomically enough: the old layout goes only once the new one is complete.
            if layout.exists():
                shutil.rmtree(layout)
            os.replace(staged, layout)
        result[name] = layout
    return {n: p for n, p in result.items() if n in names}


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


MANIFEST_TYPES = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)


def _http(
    method: str, url: str, data: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes, str]:
    req = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read(), resp.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers.get("Content-Type", "")


def tag_in_registry(registry: str, source: str, targets: Iterable[str]) -> None:
    """Give the image ``source`` ("repo:tag" on the plain-HTTP ``registry``) the names ``targets``
    inside the registry (distribution API: a blob mount per blob into another repository, then a
    manifest PUT), without copying layers through a client."""
    base = f"http://{registry}/v2"
    repo, tag = source.rsplit(":", 1)
    status, manifest, ctype = _http(
        "GET", f"{base}/{repo}/manifests/{tag}", headers={"Accept": ", ".join(MANIFEST_TYPES)}
    )
    if status != 200:
        raise ImageBuildError(f"GET {registry}/{source}: HTTP {status}: {manifest[:200]!r}")
    doc = json.loads(manifest)
    blobs = [doc["config"]["digest"], *(layer["digest"] for layer in doc["layers"])]
    for target in targets:
        trepo, ttag = target.rsplit(":", 1)
        if trepo != repo:
            for digest in blobs:
                if _http("HEAD", f"{base}/{trepo}/blobs/{digest}")[0] == 200:
                    continue
                status, body, _ = _http("POST", f"{base}/{trepo}/blobs/uploads/?mount={digest}&from={repo}", b"")
                if status != 201:
                    raise ImageBuildError(f"mounting {digest} into {registry}/{trepo}: HTTP {status}: {body[:200]!r}")
        status, body, _ = _http(
            "PUT", f"{base}/{trepo}/manifests/{ttag}", manifest, {"Content-Type": ctype or MANIFEST_TYPES[0]}
        )
        if status != 201:
            raise ImageBuildError(f"PUT {registry}/{target}: HTTP {status}: {body[:200]!r}")


def push_images(
    registry: str = "192.168.56.1:5000",
    images: Mapping[str, Path] | None = None,
    out_dir: str | Path = "/var/lib/kubelab/images",
) -> dict[str, str]:
    """Build the lab images if needed (all of them when ``images`` is None) and push them under
    every name ``REPOSITORIES`` gives; return {name: full reference of its first name}."""
    layouts = dict(images) if images is not None else build_lab_images(out_dir, IMAGE_NAMES)
    refs: dict[str, str] = {}
    for name, layout in layouts.items():
        first, *others = REPOSITORIES.get(name, (f"kubelab/{name}:latest",))
        push_image(layout, registry, first)
        if others:
            tag_in_registry(registry, first, others)
        refs[name] = f"{registry}/{first}"
    return refs


def hosts_toml(registry: str, mirror: str) -> str:
    """A containerd hosts.toml sending ``registry`` to the plain-HTTP ``mirror`` first, then upstream."""
    server = "https://registry-1.docker.io" if registry == "docker.io" else f"https://{registry}"
    return (
        f"# kubelab: {registry} through the lab registry first (pull and resolve), then the real one.\n"
        f'server = "{server}"\n\n[host."http://{mirror}"]\n  capabilities = ["pull", "resolve"]\n'
    )


def write_hosts_dirs(config_dir: str | Path, mirror: str) -> Path:
    """Write ``<config_dir>/<registry>/hosts.toml`` for every registry the lab mirrors (noded's
    ``--registry-config-path``); return ``config_dir``."""
    root = Path(config_dir)
    for registry in MIRRORED_REGISTRIES:
        (root / registry).mkdir(parents=True, exist_ok=True)
        (root / registry / "hosts.toml").write_text(hosts_toml(registry, mirror))
    return root
