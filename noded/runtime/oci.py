"""Pure translation of a PodSpec container into an OCI runtime config (``config.json`` for runc).

Role: everything here is a function of plain data, table-tested without root:

- ``resolve_process``: Kubernetes' command/args × the image's Entrypoint/Cmd rules, ``$(VAR)``
  expansion, env from the image, the PodSpec (value / fieldRef / configMap / secret refs resolved by
  the caller into ``refs``) and the Kubernetes service variables (``service_env``).
- ``build_config``: the OCI config for a sandbox (pause: new pid/ipc/uts/mount namespaces, joins the
  pod netns by path, hostname = pod name) or an app container (joins the sandbox's network, IPC and
  UTS namespaces by ``/proc/<pause pid>/ns/...`` paths), with mounts, resources → cgroup v1 limits
  (memory limit, cpu shares from requests, CFS quota from limits) and securityContext basics
  (runAsUser/Group, readOnlyRootFilesystem, capabilities add/drop, privileged).

Invariants: no rlimits are set (root here lacks CAP_SYS_RESOURCE, so raising one fails at start);
identity goes into ``annotations`` so ``runc state`` shows which pod a container belongs to.

Long function kept whole: ``build_config`` (~100 lines) writes the OCI config in the order of the
runtime spec's sections (process, root, hostname, mounts, linux), one dict a reader checks against it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from controlplane.api import quantity

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Docker's / containerd's default capability set.
DEFAULT_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
ALL_CAPS = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
]
MASKED_PATHS = [
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
]
READONLY_PATHS = ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
CPU_PERIOD = 100_000
MIN_SHARES = 2


class SpecError(ValueError):
    """The PodSpec cannot be turned into a process (e.g. no command at all); message says why."""


# ---- quantities -------------------------------------------------------------------------------


def parse_quantity(q: str | int | float) -> Decimal:
    """Kubernetes resource.Quantity → Decimal (``128Mi`` → 134217728, ``500m`` → 0.5), through the
    one parser (``controlplane.api.quantity``); a malformed one is this pod's ``SpecError``."""
    try:
        return quantity.parse_quantity(q)
    except quantity.QuantityError as e:
        raise SpecError(f"invalid quantity {q!r}: {e}") from None


# ---- env and process --------------------------------------------------------------------------

_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' ``$(VAR)`` expansion: known vars replaced, unknown left as is, ``$$`` → ``$``."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1)
        return env.get(name, m.group(0))

    return _VAR.sub(sub, text)


def service_env(services: Sequence[Mapping[str, Any]], namespace: str) -> dict[str, str]:
    """Docker-link style variables for every Service with a ClusterIP in the pod's namespace
    (plus ``kubernetes`` in ``default``), as kubelet's ``getServiceEnvVarMap`` makes them."""
    out: dict[str, str] = {}
    for svc in services:
        md, spec = svc.get("metadata", {}), svc.get("spec", {})
        ns = md.get("namespace", "default")
        if ns != namespace and not (md.get("name") == "kubernetes" and ns == "default"):
            continue
        ip = spec.get("clusterIP")
        if not ip or ip == "None":
            continue
        ports = spec.get("ports") or []
        if not ports:
            continue
        prefix = md["name"].upper().replace("-", "_")
        out[f"{prefix}_SERVICE_HOST"] = ip
        out[f"{prefix}_SERVICE_PORT"] = str(ports[0]["port"])
        first = ports[0]
        proto0 = first.get("protocol", "TCP").lower()
        out[f"{prefix}_PORT"] = f"{proto0}://{ip}:{first['port']}"
        for p in ports:
            proto = p.get("protocol", "TCP")
            if p.get("name"):
                out[f"{prefix}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
            base = f"{prefix}_PORT_{p['port']}_{proto}"
            out[base] = f"{proto.lower()}://{ip}:{p['port']}"
            out[f"{base}_PROTO"] = proto.lower()
            out[f"{base}_PORT"] = str(p["port"])
            out[f"{base}_ADDR"] = ip
    return out


def field_ref(pod: Mapping[str, Any], path: str) -> str:
    md, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status", {})
    simple = {
        "metadata.name": md.get("name", ""),
        "metadata.namespace": md.get("namespace", "default"),
        "metadata.uid": md.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", ""),
    }
    if path in simple:
        return str(simple[path])
    m = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if m:
        return str(md.get(m.group(1), {}).get(m.group(2), ""))
    raise SpecError(f"unsupported fieldRef fieldPath {path!r}")


def resolve_env(
    pod: Mapping[str, Any],
    container: Mapping[str, Any],
    image_env: Sequence[str],
    svc_env: Mapping[str, str],
    refs: Mapping[tuple[str, str, str], str] | None = None,
) -> list[str]:
    """Final ``KEY=VALUE`` list: image env, then service vars, then the container's env/envFrom
    (later wins, as in kubelet). ``refs[(kind, name, key)]`` holds configMap/secret values the
    caller fetched; a missing non-optional one raises ``SpecError``."""
    refs = refs or {}
    env: dict[str, str] = {}
    for kv in image_env:
        k, _, v = kv.partition("=")
        env[k] = v
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(svc_env)
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix", "")
        for kind, key in (("configMap", "configMapRef"), ("secret", "secretRef")):
            if key in src:
                name = src[key]["name"]
                found = False
                for (k_kind, k_name, k_key), value in refs.items():
                    if k_kind == kind and k_name == name:
                        env[prefix + k_key] = value
                        found = True
                if not found and not src[key].get("optional") and (kind, name, "") not in refs:
                    raise SpecError(f"{kind} {name!r} not found (envFrom)")
    for e in container.get("env") or []:
        name = e["name"]
        if "value" in e or "valueFrom" not in e:
            env[name] = expand(str(e.get("value", "")), env)
            continue
        vf = e["valueFrom"]
        if "fieldRef" in vf:
            env[name] = field_ref(pod, vf["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in vf:
            env[name] = _resource_field(container, vf["resourceFieldRef"])
        else:
            for kind, key in (("configMap", "configMapKeyRef"), ("secret", "secretKeyRef")):
                if key in vf:
                    ref = vf[key]
                    got = refs.get((kind, ref["name"], ref["key"]))
                    if got is None:
                        if ref.get("optional"):
                            break
                        raise SpecError(f"{kind} {ref['name']!r} has no key {ref['key']!r} (env {name})")
                    env[name] = got
    return [f"{k}={v}" for k, v in env.items()]


def _resource_field(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    res = ref["resource"]  # e.g. limits.memory
    kind, _, what = res.partition(".")
    q = (container.get("resources") or {}).get(kind, {}).get(what)
    if q is None:
        return "0"
    value = parse_quantity(q)
    div = parse_quantity(ref.get("divisor", "1"))
    return str(int(-(-value // div)))


def resolve_process(
    container: Mapping[str, Any], image_config: Mapping[str, Any], env: Sequence[str]
) -> tuple[list[str], str]:
    """(argv, workingDir) by Kubernetes' rules: command replaces Entrypoint (and drops Cmd),
    args replace Cmd; ``$(VAR)`` expanded in both."""
    cfg = image_config.get("config") or {}
    entrypoint = list(cfg.get("Entrypoint") or [])
    cmd = list(cfg.get("Cmd") or [])
    command = container.get("command")
    args = container.get("args")
    if command:
        argv = list(command) + list(args or [])
    elif args:
        argv = entrypoint + list(args)
    else:
        argv = entrypoint + cmd
    if not argv:
        raise SpecError(
            f"container {container.get('name')!r}: no command specified "
            "(neither the pod's command/args nor the image's Entrypoint/Cmd)"
        )
    envmap = dict(kv.partition("=")[::2] for kv in env)
    argv = [expand(a, envmap) for a in argv]
    wd = container.get("workingDir") or cfg.get("WorkingDir") or "/"
    return argv, wd


# ---- OCI config -------------------------------------------------------------------------------


def _user(pod: Mapping[str, Any], container: Mapping[str, Any], image_config: Mapping[str, Any]) -> dict[str, Any]:
    psc = pod.get("spec", {}).get("securityContext") or {}
    csc = container.get("securityContext") or {}
    uid = csc.get("runAsUser", psc.get("runAsUser"))
    gid = csc.get("runAsGroup", psc.get("runAsGroup"))
    img_user = str((image_config.get("config") or {}).get("User") or "")
    if uid is None and img_user:
        u, _, g = img_user.partition(":")
        if not u.isdigit():
            raise SpecError(f"image user {img_user!r} is not numeric (only numeric users are supported)")
        uid = int(u)
        if gid is None and g.isdigit():
            gid = int(g)
    user: dict[str, Any] = {"uid": int(uid or 0), "gid": int(gid if gid is not None else (uid or 0))}
    groups = list(psc.get("supplementalGroups") or [])
    if psc.get("fsGroup") is not None:
        groups.append(psc["fsGroup"])
    if groups:
        user["additionalGids"] = [int(g) for g in groups]
    return user


def _caps(container: Mapping[str, Any]) -> tuple[list[str], bool]:
    sc = container.get("securityContext") or {}
    if sc.get("privileged"):
        return list(ALL_CAPS), True
    caps = list(DEFAULT_CAPS)
    spec = sc.get("capabilities") or {}

    def norm(c: str) -> str:
        c = c.upper()
        return c if c.startswith("CAP_") else "CAP_" + c

    drops = {norm(c) for c in spec.get("drop") or []}
    if "CAP_ALL" in drops:
        caps = []
    caps = [c for c in caps if c not in drops]
    for c in spec.get("add") or []:
        n = norm(c)
        if n == "CAP_ALL":
            caps = list(ALL_CAPS)
        elif n not in caps:
            caps.append(n)
    return caps, False


def _resources(container: Mapping[str, Any]) -> dict[str, Any]:
    res = container.get("resources") or {}
    limits, requests = res.get("limits") or {}, res.get("requests") or {}
    out: dict[str, Any] = {}
    if "memory" in limits:
        mem = int(parse_quantity(limits["memory"]))
        # swap = limit: no swap beyond the memory limit, so passing it means an OOM kill.
        out["memory"] = {"limit": mem, "swap": mem}
    cpu: dict[str, Any] = {}
    req = requests.get("cpu", limits.get("cpu"))
    if req is not None:
        milli = parse_quantity(req) * 1000
        cpu["shares"] = max(MIN_SHARES, int(milli * 1024 / 1000))
    if "cpu" in limits:
        cpu["quota"] = max(1000, int(parse_quantity(limits["cpu"]) * CPU_PERIOD))
        cpu["period"] = CPU_PERIOD
    if cpu:
        out["cpu"] = cpu
    return out


def _base_mounts(read_only_sys: bool = True) -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro" if read_only_sys else "rw"],
        },
    ]


def build_config(
    *,
    kind: str,  # "sandbox" | "container"
    argv: Sequence[str],
    env: Sequence[str],
    cwd: str,
    rootfs: str,
    netns_path: str,
    annotations: Mapping[str, str],
    cgroups_path: str,
    hostname: str = "",
    sandbox_pid: int = 0,
    pod: Mapping[str, Any] | None = None,
    container: Mapping[str, Any] | None = None,
    image_config: Mapping[str, Any] | None = None,
    mounts: Sequence[tuple[str, str, bool]] = (),
    terminal: bool = False,
) -> dict[str, Any]:
    """The OCI runtime config. ``mounts`` are (host path, container path, read-only) binds.

    ``terminal``: the process gets a pseudo-terminal (PodSpec ``tty: true``); runc then needs a
    ``--console-socket`` to hand the terminal's master to (the shim's)."""
    pod = pod or {}
    container = container or {}
    image_config = image_config or {}
    if kind == "sandbox":
        namespaces = [
            {"type": "pid"},
            {"type": "ipc"},
            {"type": "uts"},
            {"type": "mount"},
            {"type": "network", "path": netns_path},
        ]
        caps: list[str] = []
        privileged = False
        user: dict[str, Any] = {"uid": 65535, "gid": 65535}
        readonly = True
        resources: dict[str, Any] = {"cpu": {"shares": MIN_SHARES}}
    else:
        if sandbox_pid <= 0:
            raise SpecError("an app container needs the sandbox's pid to join its namespaces")
        namespaces = [
            {"type": "pid"},
            {"type": "mount"},
            {"type": "network", "path": netns_path},
            {"type": "ipc", "path": f"/proc/{sandbox_pid}/ns/ipc"},
            {"type": "uts", "path": f"/proc/{sandbox_pid}/ns/uts"},
        ]
        caps, privileged = _caps(container)
        user = _user(pod, container, image_config)
        readonly = bool((container.get("securityContext") or {}).get("readOnlyRootFilesystem"))
        resources = _resources(container)
    oci_mounts = _base_mounts(read_only_sys=not privileged)
    if kind == "container":
        oci_mounts.append(
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
            }
        )
    for host, dest, ro in mounts:
        oci_mounts.append(
            {
                "destination": dest,
                "type": "bind",
                "source": host,
                "options": ["rbind", "rprivate", "ro" if ro else "rw"],
            }
        )
    linux: dict[str, Any] = {
        "namespaces": namespaces,
        "cgroupsPath": cgroups_path,
        "resources": {"devices": [{"allow": privileged, "access": "rwm"}], **resources},
    }
    if not privileged:
        linux["maskedPaths"] = list(MASKED_PATHS)
        linux["readonlyPaths"] = list(READONLY_PATHS)
    process: dict[str, Any] = {
        "terminal": terminal,
        "user": user,
        "args": list(argv),
        "env": list(env),
        "cwd": cwd or "/",
        "capabilities": {k: list(caps) for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": not privileged
        and not (container.get("securityContext") or {}).get("allowPrivilegeEscalation", False),
    }
    if kind == "container" and caps and user["uid"] == 0:
        # root keeps its capabilities across exec (ambient is only needed for non-root users).
        process["capabilities"]["inheritable"] = list(caps)
    cfg: dict[str, Any] = {
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": rootfs, "readonly": readonly},
        "mounts": oci_mounts,
        "linux": linux,
        "annotations": dict(annotations),
    }
    if hostname:
        cfg["hostname"] = hostname
    return cfg
