"""Unpack one OCI layer tarball into a directory in overlayfs' own format.

Role: a layer is unpacked exactly once into ``<store>/layers/<diff_id>/fs`` and then used as an
overlayfs lowerdir by every container of every image that has it. OCI whiteouts are translated
to what overlayfs understands:

- ``dir/.wh.name``  (file deleted by this layer)  → a 0:0 character device ``dir/name``;
- ``dir/.wh..wh..opq`` (directory made opaque)     → xattr ``trusted.overlay.opaque=y`` on ``dir``.

Invariants: member paths are confined to the target (normalised under it; never written through a
symlink), hard links must point inside the layer, device nodes other than
whiteouts are skipped (containers get /dev from runc). Runs as root (mknod, xattrs, chown).
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"


class LayerError(Exception):
    pass


def _safe_join(root: Path, name: str) -> Path:
    norm = os.path.normpath("/" + name).lstrip("/")
    if norm in ("", "."):
        return root
    path = root / norm
    # Never write through a symlink a previous member made (``a -> /etc`` then ``a/passwd``):
    # every parent must be a real directory inside the rootfs.
    p = path.parent
    while p != root:
        if p.is_symlink():
            raise LayerError(f"layer member {name!r} would be written through symlink {p}")
        p = p.parent
    return path


def open_layer(path: Path) -> tarfile.TarFile:
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"\x28\xb5\x2f\xfd":
        raise LayerError(f"zstd layers are not supported: {path}")
    return tarfile.open(path, mode="r:*")  # plain tar or gzip


def unpack_layer(tar_path: Path, target: Path) -> None:
    """Unpack ``tar_path`` (gzip or plain tar) into ``target`` (created), whiteouts translated."""
    target.mkdir(parents=True, exist_ok=True)
    dir_modes: list[tuple[Path, tarfile.TarInfo]] = []
    with open_layer(tar_path) as tar:
        for m in tar:
            dest = _safe_join(target, m.name)
            base = dest.name
            parent = dest.parent
            if base == OPAQUE:
                parent.mkdir(parents=True, exist_ok=True)
                os.setxattr(parent, "trusted.overlay.opaque", b"y")
                continue
            if base.startswith(WHITEOUT_PREFIX):
                victim = parent / base[len(WHITEOUT_PREFIX) :]
                parent.mkdir(parents=True, exist_ok=True)
                _remove(victim)
                os.mknod(victim, stat.S_IFCHR | 0o000, os.makedev(0, 0))
                continue
            parent.mkdir(parents=True, exist_ok=True)
            if m.isdir():
                if dest.exists() and not dest.is_dir():
                    _remove(dest)
                dest.mkdir(exist_ok=True)
                dir_modes.append((dest, m))
                continue
            _remove(dest)
            if m.isreg():
                src = tar.extractfile(m)
                assert src is not None
                with open(dest, "wb") as out:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
            elif m.issym():
                os.symlink(m.linkname, dest)
            elif m.islnk():
                link_src = _safe_join(target, m.linkname)
                os.link(link_src, dest)
            elif m.isfifo():
                os.mkfifo(dest)
            else:
                continue  # devices: runc provides /dev
            _apply_meta(dest, m)
    # Directory modes last: a read-only directory would refuse its own children.
    for d, m in reversed(dir_modes):
        _apply_meta(d, m)


def _apply_meta(path: Path, m: tarfile.TarInfo) -> None:
    try:
        os.lchown(path, m.uid, m.gid)
    except OSError:
        pass
    if not m.issym():
        os.chmod(path, m.mode & 0o7777)
        try:
            os.utime(path, (m.mtime, m.mtime))
        except OSError:
            pass


def _remove(path: Path) -> None:
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    elif path.is_dir():
        import shutil

        shutil.rmtree(path)
