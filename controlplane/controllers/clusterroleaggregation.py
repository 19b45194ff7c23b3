"""ClusterRole aggregation controller: an aggregated ClusterRole holds the rules of the roles it selects.

Role: Kubernetes' ``clusterrole-aggregation-controller``
(``pkg/controller/clusterroleaggregation/clusterroleaggregation_controller.go``). A ClusterRole with
``aggregationRule.clusterRoleSelectors`` gets, as its ``rules``, the union of the rules of every
other ClusterRole whose labels match any selector (deduplicated, roles taken in name order). Any
ClusterRole change enqueues every aggregated role (a label change can add or remove a source);
``sync`` computes the wanted rules with the same pure function the API server's bootstrap uses and
writes only when they differ. ``admin`` aggregates ``edit`` which aggregates ``view``: each write
is a change that enqueues the others again, so chains settle in a few rounds.

Keyed by ClusterRole name; level-triggered; safe to run any number of times.
"""

from __future__ import annotations

from controlplane.api import errors
from controlplane.api.rbac import aggregate_rules
from controlplane.api.registry import CLUSTERROLES
from controlplane.controllers.base import Controller, ControllerContext
from controlplane.controllers.util import Obj, name_of


class ClusterRoleAggregationController(Controller):
    name = "clusterrole-aggregation"
    workers = 1

    def __init__(self, ctx: ControllerContext) -> None:
        super().__init__(ctx)
        self.roles = ctx.informers.get(CLUSTERROLES)
        self.roles.add_handler(on_add=self._changed, on_update=lambda _o, n: self._changed(n), on_delete=self._changed)

    def _changed(self, _role: Obj) -> None:
        for role in self.roles.list():
            if role.get("aggregationRule"):
                self.enqueue(role)

    def sync(self, key: str) -> None:
        role = self.roles.get(key)
        if role is None:
            return
        want = aggregate_rules(role, self.roles.list())
        if want is None or want == (role.get("rules") or []):
            return
        new = dict(role)
        new["rules"] = want
        try:
            self.client.update(CLUSTERROLES, new)
        except errors.NotFound:
            return  # deleted meanwhile
        except errors.Conflict:
            self.queue.add(name_of(role))  # changed meanwhile: sync again from the informer's newer copy
