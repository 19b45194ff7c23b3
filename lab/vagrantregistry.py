"""The image registry for the Vagrant lab: Debian's docker-registry on 192.168.56.1:5000.

The address is the host's side of the lab's private network (the libvirt network ``kubelab-lab``,
or VirtualBox's host-only adapter), so the VMs pull the lab's images over the real OCI distribution
protocol without any route out. ``up`` starts it (pid in ``vagrant/.prep/registry.pid``) and pushes
the three lab images; ``down`` stops it by that pid and removes its storage.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from lab import images
from lab.vagrantprep import PREP

ADDR = "192.168.56.1:5000"
PID_FILE = PREP / "registry.pid"


def _listening() -> bool:
    host, port = ADDR.split(":")
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, int(port))) == 0


def up() -> None:
    reg = PREP / "registry"
    (reg / "data").mkdir(parents=True, exist_ok=True)
    cfg = reg / "config.yml"
    cfg.write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {reg / 'data'}\nhttp:\n  addr: {ADDR}\n"
    )
    if not (PID_FILE.exists() and Path(f"/proc/{PID_FILE.read_text().strip()}").exists()):
        with open(reg / "registry.log", "ab") as log:
            proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=log, stderr=log,
                                    stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
        PID_FILE.write_text(str(proc.pid))
    deadline = time.monotonic() + 20
    while not _listening():
        if time.monotonic() > deadline:
            raise SystemExit(f"the registry did not listen on {ADDR} (is the lab network's bridge up?)")
        time.sleep(0.1)
    for name, ref in images.push_images(ADDR, out_dir=PREP / "images").items():
        print(f"pushed {name}: {ref}")


def down() -> None:
    if PID_FILE.exists():
        try:
            os.kill(int(PID_FILE.read_text().strip()), signal.SIGTERM)
        except (ProcessLookupError, ValueError):
            pass
        PID_FILE.unlink()
    shutil.rmtree(PREP / "registry", ignore_errors=True)
    shutil.rmtree(PREP / "images", ignore_errors=True)


if __name__ == "__main__":
    {"up": up, "down": down}[sys.argv[1] if len(sys.argv) > 1 else "up"]()
