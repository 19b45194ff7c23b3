"""The CNI execution protocol shared by ``kubelab-bridge`` and ``kubelab-ipam`` (CNI spec 1.1 §3-§5).

Role: turn one exec (``CNI_*`` environment + config JSON on stdin) into a call of a command
handler, and its outcome into the spec's output: a result JSON (ADD), nothing (DEL, CHECK, GC,
STATUS), the version JSON (VERSION), or the spec's error JSON ``{cniVersion, code, msg,
details}`` on stdout with a non-zero exit. Logs never go to stdout (it is the protocol channel):
they go to stderr or, when the config names one (``logFile``) or ``KUBELAB_CNI_LOG`` is set, to
a log file.

Versions: configs with cniVersion 0.3.0, 0.3.1, 0.4.0, 1.0.0 and 1.1.0 are accepted. Results are
kept internally in the 1.x shape and converted on output (0.3/0.4 add ``ips[].version``); a
``prevResult`` in any supported shape is read into the 1.x shape. CHECK needs ≥ 0.4.0, GC and
STATUS need ≥ 1.1.0, as the reference ``skel`` enforces.

Concurrency: one command per process; nothing here is shared. Startup cost matters (the plugin is
exec'd per pod), so this module imports only ``os``, ``sys``, ``time`` and the ``_json``-based
``jsonfast``; ``dispatch`` is injectable (environ, stdin, stdout) so tests run it in-process.
"""

from __future__ import annotations

import os
import sys
import time

from netplugin.fast import jsonfast

TYPE_CHECKING = False  # no `typing` at run time on the exec path: netplugin/fast/README.md
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, TextIO

# Error codes of the spec (§ "Error"): 0-99 are reserved for the spec's well-known errors.
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENV = 4
IO_FAILURE = 5
DECODE_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN = 11
STATUS_NO_ADD = 50  # STATUS: the plugin cannot service ADD requests
STATUS_UNAVAILABLE = 51  # STATUS: unavailable, existing containers may be impaired
# Plugin-specific codes (100+).
INTERNAL = 100
NETLINK_FAILURE = 101
DUPLICATE_ALLOCATION = 102
CHECK_FAILED = 103

SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"
COMMANDS = ("ADD", "DEL", "CHECK", "STATUS", "GC", "VERSION")

# Which variables each command needs (as the reference skel: CNI_NETNS is optional for DEL).
_REQUIRED = {
    "ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
    "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
    "GC": ("CNI_PATH",),
    "STATUS": ("CNI_PATH",),
    "VERSION": (),
}
_CONTAINER_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class CniError(Exception):
    """An error the plugin reports in the spec's format; ``msg`` names what is at fault."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str) -> dict[str, Any]:
        out: dict[str, Any] = {"cniVersion": cni_version, "code": self.code, "msg": self.msg}
        if self.details:
            out["details"] = self.details
        return out


def version_tuple(v: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in v.split("."))
    except (ValueError, AttributeError):
        return (0,)


class CmdArgs:
    """One invocation: the CNI_* variables and the parsed config (``conf``)."""

    __slots__ = ("args", "command", "conf", "container_id", "environ", "ifname", "netns", "path", "stdin")

    def __init__(
        self,
        command: str,
        container_id: str,
        netns: str,
        ifname: str,
        args: str,
        path: list[str],
        conf: dict[str, Any],
        stdin: bytes,
        environ: Mapping[str, str],
    ) -> None:
        self.command = command
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.args = args
        self.path = path
        self.conf = conf
        self.stdin = stdin
        self.environ = environ

    @property
    def cni_version(self) -> str:
        return str(self.conf.get("cniVersion", LATEST))

    @property
    def network_name(self) -> str:
        return str(self.conf.get("name", ""))

    def cni_args(self) -> dict[str, str]:
        """``CNI_ARGS`` (``K=V;K=V``) as a dict; malformed pairs are a code-4 error."""
        out: dict[str, str] = {}
        for pair in filter(None, self.args.split(";")):
            k, sep, v = pair.partition("=")
            if not sep or not k:
                raise CniError(INVALID_ENV, f"invalid CNI_ARGS pair {pair!r}: expected KEY=VALUE")
            out[k] = v
        return out


# --- logging (no ``logging`` import: it costs several ms and we write one line at a time) -------

_log_file: str | None = os.environ.get("KUBELAB_CNI_LOG") or None
_log_prefix = "kubelab-cni"
_verbose = False


def configure_logging(prefix: str, conf: Mapping[str, Any] | None = None) -> None:
    """Log to ``conf["logFile"]`` (or ``$KUBELAB_CNI_LOG``) at INFO, else only warnings to stderr."""
    global _log_file, _log_prefix, _verbose
    _log_prefix = prefix
    if conf is not None and isinstance(conf.get("logFile"), str) and conf["logFile"]:
        _log_file = conf["logFile"]
    _verbose = conf is not None and conf.get("logLevel") == "debug"


def log(level: str, msg: str, **kv: object) -> None:
    """One line ``time level plugin: msg k=v`` to the log file, or WARNING+ to stderr."""
    if _log_file is None and level in ("INFO", "DEBUG") and not _verbose:
        return
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {level} {_log_prefix}[{os.getpid()}]: {msg}"
    if kv:
        line += " " + " ".join(f"{k}={v}" for k, v in kv.items())
    if _log_file is not None:
        try:
            fd = os.open(_log_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
            return
        except OSError:
            pass  # an unwritable log file must not fail the command: fall back to stderr
    sys.stderr.write(line + "\n")


# --- results ---------------------------------------------------------------------------------


def _ip_version(address: str) -> str:
    return "6" if ":" in address else "4"


def result_to_version(result: Mapping[str, Any], version: str) -> dict[str, Any]:
    """Render a 1.x-shaped result in ``version``'s format (0.3.x/0.4.0 carry ``ips[].version``)."""
    out: dict[str, Any] = {"cniVersion": version}
    legacy = version_tuple(version) < (1, 0, 0)
    for key in ("interfaces", "ips", "routes", "dns"):
        if key not in result:
            continue
        if key == "ips":
            ips = []
            for ip in result["ips"]:
                ip = {k: v for k, v in ip.items() if k != "version"}
                if legacy:
                    ip = {"version": _ip_version(str(ip.get("address", ""))), **ip}
                ips.append(ip)
            out["ips"] = ips
        else:
            out[key] = result[key]
    if "dns" not in out:
        out["dns"] = {}
    return out


def parse_result(raw: Any, where: str = "prevResult") -> dict[str, Any]:
    """Read a result (prevResult or an IPAM result) in any supported version into the 1.x shape."""
    if not isinstance(raw, dict):
        raise CniError(DECODE_FAILURE, f"{where} must be a JSON object")
    version = str(raw.get("cniVersion", "")) or LATEST
    if version not in SUPPORTED_VERSIONS:
        raise CniError(
            INCOMPATIBLE_VERSION,
            f"{where}: incompatible CNI version {version!r}",
            f"supported versions: {', '.join(SUPPORTED_VERSIONS)}",
        )
    out: dict[str, Any] = {"cniVersion": version}
    for key in ("interfaces", "ips", "routes"):
        val = raw.get(key)
        if val is None:
            continue
        if not isinstance(val, list) or not all(isinstance(x, dict) for x in val):
            raise CniError(DECODE_FAILURE, f"{where}.{key} must be a list of objects")
        if key == "ips":
            val = [{k: v for k, v in ip.items() if k != "version"} for ip in val]
            for ip in val:
                if not isinstance(ip.get("address"), str):
                    raise CniError(DECODE_FAILURE, f"{where}.ips[].address is missing")
        out[key] = [dict(x) for x in val]
    if isinstance(raw.get("dns"), dict):
        out["dns"] = dict(raw["dns"])
    return out


# --- dispatch --------------------------------------------------------------------------------


def _check_container_id(cid: str) -> None:
    if not cid or not cid[0].isalnum() or not set(cid) <= _CONTAINER_ID_CHARS:
        raise CniError(
            INVALID_ENV,
            f"invalid CNI_CONTAINERID {cid!r}: must match [a-zA-Z0-9][a-zA-Z0-9_.-]*",
        )


def check_ifname(name: str, what: str = "CNI_IFNAME") -> None:
    """Linux interface name rules (IFNAMSIZ 16 incl. NUL; no '/', ':' or whitespace; not . or ..)."""
    if not name or len(name) > 15 or name in (".", "..") or any(c in "/: \t\n\r" for c in name):
        raise CniError(
            INVALID_ENV,
            f"invalid {what} {name!r}: 1-15 characters, no '/', ':' or whitespace",
        )


def parse_invocation(environ: Mapping[str, str], stdin: bytes) -> CmdArgs:
    command = environ.get("CNI_COMMAND", "")
    if not command:
        raise CniError(INVALID_ENV, "required env variables [CNI_COMMAND] missing")
    if command not in COMMANDS:
        raise CniError(INVALID_ENV, f"unknown CNI_COMMAND {command!r}: expected one of {', '.join(COMMANDS)}")
    missing = [v for v in _REQUIRED[command] if not environ.get(v)]
    if missing:
        raise CniError(INVALID_ENV, f"required env variables [{','.join(missing)}] missing")
    if command in ("ADD", "CHECK", "DEL"):
        _check_container_id(environ["CNI_CONTAINERID"])
        check_ifname(environ["CNI_IFNAME"])
    try:
        conf = jsonfast.loads(stdin) if stdin.strip() else None
    except jsonfast.DecodeError as exc:
        raise CniError(DECODE_FAILURE, f"error parsing network configuration from stdin: {exc}") from None
    if command == "VERSION":
        conf = conf if isinstance(conf, dict) else {}
    elif not isinstance(conf, dict):
        raise CniError(DECODE_FAILURE, "network configuration on stdin must be a JSON object")
    return CmdArgs(
        command=command,
        container_id=environ.get("CNI_CONTAINERID", ""),
        netns=environ.get("CNI_NETNS", ""),
        ifname=environ.get("CNI_IFNAME", ""),
        args=environ.get("CNI_ARGS", ""),
        path=[p for p in environ.get("CNI_PATH", "").split(":") if p],
        conf=conf,
        stdin=stdin,
        environ=environ,
    )


def check_version(args: CmdArgs) -> None:
    """The config's cniVersion must be one we speak, and allow the command."""
    raw = args.conf.get("cniVersion")
    if raw is None:
        raise CniError(INVALID_CONFIG, "network configuration is missing the required key 'cniVersion'")
    if raw not in SUPPORTED_VERSIONS:
        raise CniError(
            INCOMPATIBLE_VERSION,
            f"incompatible CNI versions: config cniVersion {raw!r} is not supported",
            f"plugin supports {', '.join(SUPPORTED_VERSIONS)}",
        )
    v = version_tuple(str(raw))
    if args.command == "CHECK" and v < (0, 4, 0):
        raise CniError(INCOMPATIBLE_VERSION, f"config cniVersion {raw} does not allow CHECK (needs >= 0.4.0)")
    if args.command in ("GC", "STATUS") and v < (1, 1, 0):
        raise CniError(INCOMPATIBLE_VERSION, f"config cniVersion {raw} does not allow {args.command} (needs >= 1.1.0)")
    if not isinstance(args.conf.get("name", ""), str) or not args.conf.get("name"):
        raise CniError(INVALID_CONFIG, "network configuration is missing the required key 'name'")


def _version_of(stdin: bytes, default: str) -> str:
    """The config's cniVersion for an error reply, when the error came before parsing it."""
    try:
        v = jsonfast.loads(stdin).get("cniVersion")
    except (jsonfast.DecodeError, AttributeError):
        return default
    return v if isinstance(v, str) and v in SUPPORTED_VERSIONS else default


def dispatch(
    handlers: Mapping[str, Callable[[CmdArgs], dict[str, Any] | None]],
    *,
    prefix: str,
    environ: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    stdout: TextIO | None = None,
) -> int:
    """Run one CNI command; print its result or error; return the exit code."""
    environ = os.environ if environ is None else environ
    out = sys.stdout if stdout is None else stdout
    if stdin is None:
        stdin = sys.stdin.buffer.read()
    version = LATEST
    global _log_prefix
    _log_prefix = prefix
    try:
        args = parse_invocation(environ, stdin)
        configure_logging(prefix, args.conf)
        raw_v = args.conf.get("cniVersion")
        if isinstance(raw_v, str) and raw_v in SUPPORTED_VERSIONS:
            version = raw_v
        if args.command == "VERSION":
            out.write(jsonfast.dumps({"cniVersion": version, "supportedVersions": list(SUPPORTED_VERSIONS)}))
            return 0
        check_version(args)
        result = handlers[args.command](args)
        if result is not None:
            out.write(jsonfast.dumps(result_to_version(result, version)))
        return 0
    except CniError as err:
        log("ERROR", err.msg, code=err.code)
        version = _version_of(stdin, version)
        out.write(jsonfast.dumps(err.to_json(version)))
        return 1
    except Exception as exc:  # a bug or an unexpected OS error: still answer in the spec's format
        log("ERROR", f"unexpected {type(exc).__name__}: {exc}")
        out.write(jsonfast.dumps(CniError(INTERNAL, f"internal error: {type(exc).__name__}: {exc}").to_json(version)))
        return 1
    finally:
        out.flush()
