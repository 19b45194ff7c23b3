"""Put fast launchers for ``kubelab-bridge`` and ``kubelab-ipam`` into a CNI bin dir.

Two kinds: the native thin client (``thinclient.c``, compiled here with ``cc``; it hands the
request to the node's CNI server and execs the Python launcher ``<name>.py`` when none runs), and
the Python launcher itself (used alone when there is no compiler). See README "Performance".

Why not just copy the ``[project.scripts]`` entry points: pip writes them with the virtualenv's
interpreter and no flags, so every exec pays for ``site`` (the venv's ``.pth`` files, the editable
install's import hook): ~25 ms before our code runs, twice the reference plugin's whole ADD. The
plugins need only the stdlib, so these launchers start the base interpreter with ``-I -S``
(isolated, no site: ~8 ms) and put this source tree first on ``sys.path``.

``install_plugins(bin_dir)`` is what noded (or a lab script) calls; ``python -m
netplugin.install DIR`` does the same by hand. Files are replaced atomically (write, rename), so a
plugin exec racing an install sees either the old or the new launcher.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The native thin client's source, beside the rest of the speed machinery (netplugin/fast/README.md).
THIN_CLIENT_C = Path(__file__).parent / "fast" / "thinclient.c"

# Each launcher runs the thin client (``fast/thin.py``): it hands the request to the node's CNI
# server when one is running and otherwise runs the plugin in-process.
PLUGINS = {"kubelab-bridge": "main_bridge", "kubelab-ipam": "main_ipam"}


def base_interpreter() -> str:
    """The interpreter for the launchers: they need only the stdlib of this Python version.

    The distribution's ``/usr/bin/python3.X`` of the same version is preferred when present: it
    links libpython statically and starts ~15% faster than a ``--enable-shared`` build (pyenv's),
    which is most of a plugin exec. Otherwise the real interpreter behind the virtualenv.
    """
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if os.access(system, os.X_OK):
        return system
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def launcher_text(entry: str, python: str | None = None, source_root: str | None = None) -> str:
    python = python or base_interpreter()
    root = source_root or str(Path(__file__).resolve().parent.parent)
    return (
        f"#!{python} -IS\n"
        "# kubelab CNI plugin launcher (netplugin/install.py): stdlib only, no site-packages.\n"
        "import sys\n"
        f"sys.path.insert(0, {root!r})\n"
        f"from netplugin.fast.thin import {entry} as main\n"
        "sys.exit(main())\n"
    )


def install_plugins(bin_dir: str | Path, python: str | None = None, native: bool | None = None) -> list[Path]:
    """Write (or refresh) both plugins into ``bin_dir``; return their paths.

    ``native=True`` installs the C thin client (``thinclient.c``, design (c), the fastest: see
    the README) as the plugin, with the Python launcher beside it as ``<name>.py``, which the
    client execs when no CNI server runs. It needs a C compiler; ``OSError`` names what failed.
    ``native=None`` (the default) does that when ``cc`` is on PATH and quietly installs the Python
    launchers otherwise; ``native=False`` always installs the Python launchers.
    """
    if native is None:
        import shutil

        native = shutil.which("cc") is not None and THIN_CLIENT_C.exists()
    d = Path(bin_dir)
    d.mkdir(parents=True, exist_ok=True)
    out = []
    for name, entry in PLUGINS.items():
        path = d / name
        script = d / f"{name}.py" if native else path
        if not native:
            (d / f"{name}.py").unlink(missing_ok=True)  # a native install's leftover
        tmp = d / f".{name}.tmp{os.getpid()}"
        tmp.write_text(launcher_text(entry, python))
        tmp.chmod(0o755)
        os.replace(tmp, script)
        if native:
            compile_thin_client(name, path)
        out.append(path)
    return out


_compiled: dict[tuple[str, int], bytes] = {}  # (plugin, source mtime) -> binary, per process


def compile_thin_client(plugin: str, dest: Path) -> None:
    import subprocess

    src = THIN_CLIENT_C
    tmp = dest.with_name(f".{dest.name}.bin{os.getpid()}")
    key = (plugin, src.stat().st_mtime_ns)
    if key in _compiled:  # installing into several dirs (tests, benchmarks): compile once
        tmp.write_bytes(_compiled[key])
        tmp.chmod(0o755)
        os.replace(tmp, dest)
        return
    res = subprocess.run(
        ["cc", "-O2", "-Wall", f'-DPLUGIN="{plugin}"', "-o", str(tmp), str(src)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise OSError(f"compiling {src} for {plugin} failed: {res.stderr.strip()}")
    _compiled[key] = tmp.read_bytes()
    os.replace(tmp, dest)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    native: bool | None = True if "--native" in args else False if "--python" in args else None
    args = [a for a in args if a not in ("--native", "--python")]
    if len(args) != 1:
        sys.stderr.write("usage: python -m netplugin.install [--native|--python] CNI_BIN_DIR\n")
        return 2
    for p in install_plugins(args[0], native=native):
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
