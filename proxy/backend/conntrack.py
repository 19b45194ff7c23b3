"""Stale UDP conntrack entries: removed when a UDP service loses an endpoint.

Why: UDP has no connection close, so a conntrack entry keeps DNAT-ing a client's datagrams to an
endpoint that is gone until the entry times out; kube-proxy deletes such entries with the
``conntrack`` tool after the rules changed, and so do we (in the proxy's network namespace).

- an endpoint left a UDP service port: delete flows to the cluster IP / external IPs / node port
  that were DNAT-ed to it (``conntrack -D -p udp --orig-dst VIP --dst-nat EP``);
- a UDP service port got its first endpoint: delete flows to its IPs that were recorded while it
  had none (``conntrack -D -p udp --orig-dst VIP``), which would otherwise black-hole.
``conntrack -D`` exits 1 when nothing matched; that is success for us. A missing ``conntrack``
program or a failing call never fails the sync (the rules are in; kube-proxy only logs too): it
is one error line a minute with a count (``controlplane.client.failures``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from controlplane.client.failures import FailureLog
from proxy.backend.exec import CommandError, CommandRunner

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StaleFlow:
    """Flows to ``dst`` (``dport`` for node ports), optionally only those DNAT-ed to ``endpoint``."""

    protocol: str
    dst: str = ""  # a service IP; "" with dport for node ports
    dport: int = 0
    endpoint: str = ""  # endpoint IP ("" = any)

    def argv(self) -> list[str]:
        argv = ["conntrack", "-D", "-p", self.protocol]
        if self.dst:
            argv += ["--orig-dst", self.dst]
        if self.dport:
            argv += ["--orig-port-dst", str(self.dport)]
        if self.endpoint:
            argv += ["--dst-nat", self.endpoint]
        return argv


class Conntrack:
    def __init__(self, runner: CommandRunner | None = None) -> None:
        self.runner = runner or CommandRunner()
        self.failures = FailureLog(log, "conntrack cleanup of stale UDP flows")

    def clear(self, flows: list[StaleFlow]) -> None:
        for flow in flows:
            try:
                res = self.runner.run(flow.argv(), check=False)
            except CommandError as exc:
                self.failures.failure(exc, level=logging.WARNING)
                continue
            if res.returncode not in (0, 1):
                self.failures.failure(f"{' '.join(flow.argv())}: {res.stderr.strip()}", level=logging.WARNING)
            else:
                self.failures.success()
                log.info("conntrack cleared: %s", " ".join(flow.argv()[1:]))


class FakeConntrack:
    def __init__(self) -> None:
        self.cleared: list[StaleFlow] = []

    def clear(self, flows: list[StaleFlow]) -> None:
        self.cleared.extend(flows)
