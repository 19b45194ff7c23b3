"""The controller-manager: level-triggered reconcile loops over the API.

Modules (each a pure planner plus a ``Controller`` with ``sync(key)``; see ``base.py`` for the
shape every controller shares and ``manager.py`` for how they run):

- ``replicaset``, ``deployment``, ``daemonset``, ``statefulset``, ``job`` — workloads;
- ``endpoints`` — Endpoints and EndpointSlices for Services with a selector;
- ``nodeipam``, ``nodelifecycle`` — podCIDRs; heartbeats, taints and eviction;
- ``namespace``, ``garbagecollector``, ``serviceaccount``, ``podgc`` — housekeeping;
- ``manager`` — ``run_controller_manager(client, stop, ControllerOptions(...))``;
  ``cli`` — ``kubelab controller-manager``.

Importing this package imports nothing else, so ``util`` and the planners stay cheap to load.
"""
