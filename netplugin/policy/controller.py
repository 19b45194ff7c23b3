"""The node's NetworkPolicy controller (runs inside ``kubelab netagent``).

Role: keep this node's filter table equal to ``plan.render(policies, pods, namespaces, node)``.

Inputs: three informers — NetworkPolicies (all namespaces), Pods (all: peers on other nodes are
matched by IP, so every pod's IP and labels are needed, not only this node's) and Namespaces
(their labels, for namespaceSelector). Handlers only add the one key ``SYNC_KEY`` to a work queue.

Level-triggered: one worker (the client's ``worker_loop``, ``controlplane.client.controller``)
renders from the caches, and when the text differs from the last applied one (or ``resync``
seconds passed, so hand-made damage is repaired) it applies it with one ``iptables-restore
--noflush`` — stale owned chains (pods gone, policies deleted) flushed and deleted in the same
transaction — then makes sure FORWARD and INPUT jump to KUBELAB-FIREWALL. Syncs are
rate-limited: at most one per ``min_interval``, so a burst of pod updates costs one restore;
failures retry with exponential backoff (0.2 s … 10 s): ``_sync_key`` returns the delay after
which the worker loop syncs again (``resync`` after a success, the backoff after a failure).

Stop: ``stop(cleanup=True)`` removes the jump and every owned chain, so a stopped agent leaves
no policy rules behind (and, like every implementation, enforces nothing while it is down).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from controlplane.client.controller import worker_loop
from controlplane.client.failures import FailureLog
from controlplane.client.workqueue import WorkQueue
from netplugin.policy import plan
from netplugin.policy.driver import PolicyDriver, cleanup

log = logging.getLogger("netplugin.policy")

#: The controller's only work-queue key: every event means "render this node's rules again".
SYNC_KEY = "rules"


class PolicyController:
    def __init__(
        self,
        client: Any,
        node_name: str,
        driver: PolicyDriver,
        *,
        min_interval: float = 0.2,
        resync: float = 30.0,
    ) -> None:
        from controlplane.api.registry import NAMESPACES, NETWORKPOLICIES, PODS
        from controlplane.client.informer import Informer

        self.node_name = node_name
        self.driver = driver
        self.min_interval = min_interval
        self.resync = resync
        self.policies = Informer(client, NETWORKPOLICIES, name="netagent-networkpolicies")
        self.pods = Informer(client, PODS, name="netagent-policy-pods")
        self.namespaces = Informer(client, NAMESPACES, name="netagent-policy-namespaces")
        self.queue: WorkQueue[str] = WorkQueue("netagent-policy")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_full = 0.0
        self.last_text: str | None = None
        self.syncs = 0
        self.restores = 0
        self.failures = FailureLog(log, "network policy sync", initial=0.2, cap=10.0)

        def poke(*_objs: Any) -> None:
            self.queue.add(SYNC_KEY)

        for inf in (self.policies, self.pods, self.namespaces):
            inf.add_handler(on_add=poke, on_update=poke, on_delete=poke)

    def sync(self, force: bool = False) -> bool:
        """Render and apply if changed (or ``force``); True when iptables was written."""
        ruleset = plan.render(self.policies.list(), self.pods.list(), self.namespaces.list(), self.node_name)
        text = ruleset.restore_text()
        if text == self.last_text and not force:
            return False
        stale = self.driver.owned_chains() - set(ruleset.chains)
        self.driver.restore(ruleset.restore_text(stale=stale))
        self.driver.ensure_jumps()
        self.last_text = text
        self.restores += 1
        log.info(
            "network policy rules applied node=%s chains=%d stale_removed=%d",
            self.node_name,
            len(ruleset.chains),
            len(stale),
        )
        return True

    @property
    def last_error(self) -> str | None:
        return self.failures.last_error

    def start(self) -> None:
        for inf in (self.policies, self.pods, self.namespaces):
            inf.start()
        self._thread = threading.Thread(target=self._run, name="netagent-policy", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for inf in (self.policies, self.pods, self.namespaces):
            while not self._stop.is_set() and not inf.wait_for_sync(1.0):
                pass
        self.queue.add(SYNC_KEY)
        worker_loop(self.queue, self._sync_key, self._stop)

    def _sync_key(self, _key: str) -> float:
        """The worker loop's sync: one ``sync`` (forced every ``resync``); the seconds until the next."""
        try:
            force = time.monotonic() - self._last_full >= self.resync
            self.sync(force=force)
            if force:
                self._last_full = time.monotonic()
            self.failures.success()
            wait = self.resync
        except Exception as exc:  # one line a minute per distinct error, retried with back-off
            self.last_text = None  # unknown state: rewrite next time
            wait = self.failures.failure(exc, level=logging.WARNING)
        self.syncs += 1
        # Rate limit: the key stays in processing meanwhile, so a burst of events coalesces into
        # one more sync after this pause (the queue re-queues a key added while it is processed).
        self._stop.wait(self.min_interval)
        return wait

    def stop(self, cleanup_rules: bool = True) -> None:
        self._stop.set()
        self.queue.shutdown()
        for inf in (self.policies, self.pods, self.namespaces):
            inf.stop()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if cleanup_rules:
            try:
                removed = cleanup(self.driver)
                log.info("network policy rules removed chains=%d", len(removed))
            except Exception as exc:
                log.warning("network policy cleanup failed: %s", exc)
