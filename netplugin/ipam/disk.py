"""host-local's on-disk IPAM store, byte for byte, so ``ls /var/lib/cni/networks/<net>`` shows
who holds which address and the reference ``host-local`` and ``kubelab-ipam`` can share a network.

Layout of ``<dataDir>/<network name>/``:
- ``<ip>``: one file per reserved address, created with ``O_CREAT|O_EXCL`` (the atomic reserve),
  holding ``<containerID>\\r\\n<ifname>`` (what host-local 1.1.1 writes; files holding only the
  container ID come from older versions and still match that ID);
- ``last_reserved_ip.<range set index>``: the last address handed out (round-robin resumes after it);
- ``lock``: an empty file; every Get/Release/Find holds an exclusive ``flock`` on it for the whole
  operation (host-local uses go-filemutex, which is flock too), so processes of both plugins
  serialise on the same lock.

Concurrency: many plugin processes run at once (one per pod); the flock serialises them. The lock
is released by closing the descriptor, also when the process dies.
"""

from __future__ import annotations

import fcntl
import os

from netplugin.fast.ipnet import IP

TYPE_CHECKING = False  # no `typing` at run time on the exec path: netplugin/fast/README.md
if TYPE_CHECKING:
    pass

LINE_BREAK = "\r\n"
LAST_RESERVED_PREFIX = "last_reserved_ip."
LOCK_NAME = "lock"


class DiskStore:
    def __init__(self, data_dir: str, network: str) -> None:
        self.dir = os.path.join(data_dir, network)
        self._lock_fd: int | None = None

    # -- locking --
    def __enter__(self) -> DiskStore:
        os.makedirs(self.dir, mode=0o755, exist_ok=True)
        fd = os.open(os.path.join(self.dir, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._lock_fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing drops the flock
            self._lock_fd = None

    # -- reservations --
    def reserve(self, container_id: str, ifname: str, ip: IP, range_set: int) -> bool:
        path = os.path.join(self.dir, str(ip))
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        except FileExistsError:
            return False
        try:
            os.write(fd, f"{container_id}{LINE_BREAK}{ifname}".encode())
        except OSError:
            os.close(fd)
            os.unlink(path)
            raise
        os.close(fd)
        self._write_last(range_set, ip)
        return True

    def _write_last(self, range_set: int, ip: IP) -> None:
        path = os.path.join(self.dir, f"{LAST_RESERVED_PREFIX}{range_set}")
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(str(ip))
        os.replace(tmp, path)

    def last_reserved_ip(self, range_set: int) -> IP | None:
        try:
            with open(os.path.join(self.dir, f"{LAST_RESERVED_PREFIX}{range_set}")) as f:
                return IP.parse(f.read().strip())
        except (OSError, ValueError):
            return None

    def reservations(self) -> list[tuple[IP, str, str]]:
        """Every reservation file as (ip, container ID, ifname or "" for legacy files)."""
        out = []
        try:
            names = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        for name in names:
            if name == LOCK_NAME or name.startswith(LAST_RESERVED_PREFIX):
                continue
            try:
                ip = IP.parse(name)
            except ValueError:
                continue  # not ours (an editor's backup file, a tmp file)
            # os.open/os.read, not open(): this loop reads every reservation on every ADD (the
            # duplicate check), and the io objects cost more than the syscalls.
            try:
                fd = os.open(f"{self.dir}/{name}", os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            try:
                content = os.read(fd, 4096).decode(errors="replace").strip()
            finally:
                os.close(fd)
            # "<id>\r\n<ifname>" (host-local writes CRLF); read bytes so no newline translation
            # hides the CR, and accept a bare LF too.
            cid, _, ifname = content.partition("\n")
            out.append((ip, cid.strip(), ifname.strip()))
        return out

    def reserved_ips(self) -> list[IP]:
        return [ip for ip, _, _ in self.reservations()]

    def get_by_id(self, container_id: str, ifname: str) -> list[IP]:
        return [ip for ip, c, i in self.reservations() if c == container_id and i in (ifname, "")]

    def release(self, ip: IP) -> None:
        try:
            os.unlink(os.path.join(self.dir, str(ip)))
        except FileNotFoundError:
            pass

    def release_by_id(self, container_id: str, ifname: str) -> list[IP]:
        gone = self.get_by_id(container_id, ifname)
        for ip in gone:
            self.release(ip)
        return gone
