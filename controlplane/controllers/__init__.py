"""The controller-manager: level-triggered reconcile loops over the API."""
