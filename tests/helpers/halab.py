"""The HA lab's names as the e2e test and the benchmark read them (``kubelab up --control-planes 3``)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable

CPS = {"kl-cp1": "192.168.56.21", "kl-cp2": "192.168.56.22", "kl-cp3": "192.168.56.23"}


def etcd_leader(kubelab: Callable[..., subprocess.CompletedProcess[str]]) -> str:
    """The control plane whose etcd member leads, from ``kubelab etcd endpoint status -w json``."""
    res = kubelab("etcd", "endpoint", "status", "-w", "json")
    by_ip = {ip: name for name, ip in CPS.items()}
    for st in json.loads(res.stdout):
        s = st["Status"]
        if s["header"]["member_id"] == s["leader"]:
            return by_ip[st["Endpoint"].split("//")[1].split(":")[0]]
    raise AssertionError(f"no etcd leader in {res.stdout}")
