"""CNI plugins (``kubelab-bridge``, ``kubelab-ipam``) and the node network agent."""
