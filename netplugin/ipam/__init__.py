"""IPAM plugin ``kubelab-ipam``: host-local compatible address management (allocator, store, plugin)."""
