"""``NodedConfig``: everything noded is told at start (flags of ``kubelab noded``, ``noded.cli``).

Read-only after start; shared by the agent and its managers (node status, static pods, pod workers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class NodedConfig:
    node_name: str
    node_ip: str
    root_dir: Path
    cni_conf_dir: Path
    cni_bin_dirs: list[Path]
    cni: str = "kubelab"
    manifests_dir: Path | None = None
    log_root: Path = Path("/var/log/pods")
    netns_prefix: str = ""
    cni_exec_prefix: list[str] = field(default_factory=list)
    node_netns_path: str = ""
    insecure_registries: list[str] = field(default_factory=list)
    kubelet_port: int = 10250
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    workers: int = 8
    lease_period: float = 10.0
    status_period: float = 10.0
    housekeeping_period: float = 2.0
    pleg_period: float = 1.0
    backoff_base: float = 10.0
    backoff_cap: float = 300.0
    cluster_dns: str = "10.96.0.10"
    cluster_cidr: str = "10.244.0.0/16"
    pause_image: str = ""
    image_gc_high_bytes: int = 10 * 2**30
    image_gc_period: float = 60.0
    max_pods: int = 110
