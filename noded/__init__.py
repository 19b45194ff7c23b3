"""noded, the node agent (kubelet): registers its node and runs pods with runc."""
