"""``Authorization``: everything the API server needs from this package, built from its options.

Role: one object the server holds (``ApiServer.authorization``): the authorizer chain of
``--authorization-mode`` (or ``ServerOptions.authorizer`` when a test supplies one), the policy
index and node graph and the feeds that keep them current, the bootstrap policy reconciliation,
impersonation, the 403 wording, the review kinds, and the user-aware admission plugins (RBAC
escalation prevention, NodeRestriction).

Invariants: until the first list of the RBAC objects has been applied the server does not start
answering (``start`` waits for it), so no request is ever judged against a half-loaded policy.

Concurrency: ``start``/``stop`` on the event loop; the rest is called from the loop or store threads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from controlplane.apiserver.auth import Authenticator, Authorizer, RequestAttributes, UserInfo
from controlplane.apiserver.authz import AlwaysAllow, AlwaysDeny, Chain, PrivilegedGroups, forbidden, parse_modes
from controlplane.apiserver.authz import bootstrap as bootstrap_policy
from controlplane.apiserver.authz.escalation import RBACEscalation
from controlplane.apiserver.authz.feed import Follower, plural_of
from controlplane.apiserver.authz.impersonation import impersonate
from controlplane.apiserver.authz.node import NodeAuthorizer, NodeGraph
from controlplane.apiserver.authz.noderestriction import NodeRestriction
from controlplane.apiserver.authz.rbac import PolicyIndex, RBACAuthorizer
from controlplane.apiserver.authz.reviews import review

log = logging.getLogger(__name__)

RBAC_PREFIX = "/registry/rbac.authorization.k8s.io/"
PODS_PREFIX = "/registry/pods/"
SYNC_TIMEOUT = 30.0


class Authorization:
    def __init__(self, options: Any, authn: Authenticator) -> None:
        self.modes = parse_modes(options.authorization_mode)
        self.authn = authn
        self.index = PolicyIndex()
        self.graph = NodeGraph()
        # pkg/kubeapiserver/authorizer/config.go: the privileged group is asked before any mode
        parts: list[Authorizer] = [PrivilegedGroups()]
        for mode in self.modes:
            if mode == "Node":
                parts.append(NodeAuthorizer(self.graph))
            elif mode == "RBAC":
                parts.append(RBACAuthorizer(self.index))
            elif mode == "AlwaysAllow":
                parts.append(AlwaysAllow())
            else:
                parts.append(AlwaysDeny())
        self.authorizer: Authorizer = options.authorizer or Chain(parts)
        self.escalation = RBACEscalation(self.index, self.authorizer)
        self.node_restriction = NodeRestriction(self.graph) if "Node" in self.modes else None
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------------------

    def bootstrap(self, ops: Any) -> None:
        if "RBAC" in self.modes:
            bootstrap_policy.reconcile(ops)

    async def start(self, store: Any, run: Callable[..., Awaitable[Any]], feeds: Any) -> None:
        loop = asyncio.get_running_loop()

        async def list_fn(prefix: str) -> Any:
            return await run(store.list, prefix)

        def subscribe(prefix: str, rev: int) -> Any:
            return feeds.subscribe(prefix, rev, loop)

        followers: list[Follower] = []
        if "RBAC" in self.modes:
            followers.append(
                Follower(
                    RBAC_PREFIX,
                    list_fn,
                    subscribe,
                    lambda key, obj, deleted: self.index.apply(plural_of(key), obj, deleted),
                    self.index.reset,
                )
            )
        if "Node" in self.modes:
            followers.append(
                Follower(
                    PODS_PREFIX,
                    list_fn,
                    subscribe,
                    lambda key, obj, deleted: self.graph.apply(obj, deleted),
                    self.graph.reset,
                    skip_raw=lambda raw: b'"nodeName"' not in raw,
                )
            )
        for f in followers:
            self._tasks.append(asyncio.ensure_future(f.run()))
        for f in followers:
            try:
                await asyncio.wait_for(f.synced.wait(), SYNC_TIMEOUT)
            except TimeoutError:
                log.warning("authorization state under %s not loaded after %.0f s", f.prefix, SYNC_TIMEOUT)

    def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        self._tasks.clear()

    # -- per request -----------------------------------------------------------------------

    def impersonate(self, headers: Sequence[tuple[bytes, bytes]], user: UserInfo) -> UserInfo:
        # ASGI servers lowercase header names: a cheap scan for the (rare) impersonating request
        if not any(k.startswith(b"impersonate-") for k, _ in headers):
            return user
        other = impersonate(headers, user, self.authorizer)
        return other if other is not None else user

    def check(self, user: UserInfo, attrs: RequestAttributes) -> None:
        """Raise the 403 Kubernetes would answer, or return (allowed)."""
        allowed, reason = self.authorizer.authorize(user, attrs)
        if not allowed:
            raise forbidden(user, attrs, reason)
        if self.node_restriction is not None:
            self.node_restriction.check_request(user, attrs)

    def review(self, plural: str, body: Any, user: UserInfo, namespace: str) -> dict[str, Any]:
        index = self.index if "RBAC" in self.modes else None
        return review(plural, body, user, namespace, self.authorizer, index, self.authn)

    def admission_plugins(self) -> list[Any]:
        plugins: list[Any] = [self.escalation]
        if self.node_restriction is not None:
            plugins.append(self.node_restriction)
        return plugins
