"""What makes the node Ready: kubelet's ``runtimeState`` and ``ReadyCondition``, for noded.

Role: kubelet (pkg/kubelet/runtime.go, kubelet.go ``updateRuntimeUp``, nodestatus/setters.go
``ReadyCondition``) reports ``Ready=False`` with reason ``KubeletNotReady`` and a message made of
the runtime's errors and the network's errors, and turns ``Ready=True`` again by itself once the
cause is gone. noded does the same with the same wording:

- runtime: ``check_runtime`` runs the runtime's status check (``runc --version`` for runc: it must
  exist and run); failing → ``container runtime not ready: RuntimeReady=false
  reason:RuntimeNotReady message:<what failed, how to fix>``; never checked yet → "container
  runtime status check may not have completed yet"; no successful check for ``sync_threshold``
  → "container runtime is down"; a PLEG that has not relisted for ``pleg_threshold`` → "PLEG is not
  healthy: pleg was last seen active 3m0s ago; threshold is 3m0s";
- network (containerd's ``NetworkReady``): ``check_network`` loads the CNI config list and looks
  for every plugin it names in the CNI bin dirs; failing → ``container runtime network not ready:
  NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: <why>``
  ("cni plugin not initialized" without a config, libcni's "failed to find plugin ..." without
  its executable);
- several errors read as Go's aggregate error: ``[first, second]``.

Each failing check is also one log line per distinct error, at most once a minute with a count
(``controlplane.client.failures``).

Concurrency: the node-status loop and the PLEG write, the status writer reads; one lock.
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from controlplane.client.failures import FailureLog, describe, missing_program
from noded.network.cni import NetworkNotReady, load_conflist

log = logging.getLogger(__name__)

RUNTIME_SYNC_THRESHOLD = 30.0  # kubelet's maxWaitForContainerRuntime
PLEG_THRESHOLD = 180.0  # kubelet's relistThreshold (3 minutes)
CHECK_PERIOD = 5.0  # kubelet runs updateRuntimeUp every 5 s


def _go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` for whole seconds: ``3m0s``, ``45s``, ``1h2m3s``."""
    s = int(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}h{m}m{sec}s"
    if m:
        return f"{m}m{sec}s"
    return f"{sec}s"


def aggregate(errors: Sequence[str]) -> str:
    """Go's ``utilerrors.NewAggregate(errs).Error()``."""
    return errors[0] if len(errors) == 1 else "[" + ", ".join(errors) + "]"


def runtime_status(runtime: Any) -> str | None:
    """The runtime's status check: None when usable, else why not (one line)."""
    status = getattr(runtime, "status", None)
    try:
        if callable(status):
            status()
        runc = getattr(runtime, "runc_bin", None)
        if runc:
            res = subprocess.run(
                [str(runc), "--version"], capture_output=True, text=True, timeout=10, stdin=subprocess.DEVNULL
            )
            if res.returncode != 0:
                return f"{runc} --version exited {res.returncode}: {res.stderr.strip()}"
    except subprocess.TimeoutExpired:
        return "runc --version did not answer within 10s"
    except (FileNotFoundError, PermissionError):  # the runtime's own program cannot be executed
        return missing_program(str(getattr(runtime, "runc_bin", "runc")))
    except Exception as exc:
        return describe(exc)
    return None


def network_status(cni: Any) -> str | None:
    """containerd's NetworkReady for our CNI: None when ready, else the plugin's error."""
    conf_dir = getattr(cni, "conf_dir", None)
    if conf_dir is None:  # a fake: it says itself
        return None if cni.ready() else "cni plugin not initialized"
    try:
        conf = load_conflist(conf_dir)
    except NetworkNotReady:
        return "cni plugin not initialized"
    except OSError as exc:
        return describe(exc)
    bin_dirs: list[Path] = list(getattr(cni, "bin_dirs", []))
    for plugin in conf.get("plugins") or []:
        ptype = str((plugin or {}).get("type", ""))
        if not any((d / ptype).is_file() and os.access(d / ptype, os.X_OK) for d in bin_dirs):
            return f'failed to find plugin "{ptype}" in path {[str(d) for d in bin_dirs]}'
    return None


class RuntimeState:
    """kubelet's ``runtimeState``: the last runtime check, network and runtime errors, PLEG health."""

    def __init__(
        self,
        *,
        sync_threshold: float = RUNTIME_SYNC_THRESHOLD,
        pleg_threshold: float = PLEG_THRESHOLD,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sync_threshold = sync_threshold
        self.pleg_threshold = pleg_threshold
        self.clock = clock
        self._lock = threading.Lock()
        self._last_runtime_sync: float | None = None
        self._runtime_error: str | None = None
        self._network_error: str | None = "cni plugin not initialized"  # kubelet: ErrNetworkUnknown
        self._pleg_active: float | None = None
        self._last_check: float | None = None
        self.runtime_log = FailureLog(log, "container runtime status check", clock=clock)
        self.network_log = FailureLog(log, "container runtime network check", clock=clock)

    # --- writers ---------------------------------------------------------------------------
    def check(self, runtime: Any, cni: Any, *, force: bool = False) -> bool:
        """Run both checks (at most every ``CHECK_PERIOD`` unless ``force``); True if they ran."""
        now = self.clock()
        with self._lock:
            if not force and self._last_check is not None and now - self._last_check < CHECK_PERIOD:
                return False
            self._last_check = now
        self.set_runtime(runtime_status(runtime))
        self.set_network(network_status(cni))
        return True

    def set_runtime(self, error: str | None) -> None:
        with self._lock:
            self._runtime_error = error
            if error is None:
                self._last_runtime_sync = self.clock()
        if error is None:
            self.runtime_log.success()
        else:
            self.runtime_log.failure(error)

    def set_network(self, error: str | None) -> None:
        with self._lock:
            self._network_error = error
        if error is None:
            self.network_log.success()
        else:
            self.network_log.failure(error, level=logging.WARNING)

    def pleg_relisted(self) -> None:
        with self._lock:
            self._pleg_active = self.clock()

    # --- readers ---------------------------------------------------------------------------
    def runtime_errors(self) -> list[str]:
        now = self.clock()
        errs: list[str] = []
        with self._lock:
            if self._last_runtime_sync is None:
                if self._runtime_error is None:
                    errs.append("container runtime status check may not have completed yet")
            elif now - self._last_runtime_sync >= self.sync_threshold:
                errs.append("container runtime is down")
            if self._pleg_active is not None and now - self._pleg_active >= self.pleg_threshold:
                errs.append(
                    f"PLEG is not healthy: pleg was last seen active {_go_duration(now - self._pleg_active)} "
                    f"ago; threshold is {_go_duration(self.pleg_threshold)}"
                )
            if self._runtime_error is not None:
                errs.append(
                    "container runtime not ready: RuntimeReady=false reason:RuntimeNotReady "
                    f"message:{self._runtime_error}"
                )
        return errs

    def network_errors(self) -> list[str]:
        with self._lock:
            err = self._network_error
        if err is None:
            return []
        return [
            "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
            f"message:Network plugin returns error: {err}"
        ]

    def network_ready(self) -> bool:
        with self._lock:
            return self._network_error is None

    def ready(self) -> tuple[bool, str, str]:
        """(status, reason, message) of the node's Ready condition (kubelet's ReadyCondition)."""
        errs = self.runtime_errors() + self.network_errors()
        if errs:
            return False, "KubeletNotReady", aggregate(errs)
        return True, "KubeletReady", "kubelet is posting ready status"
