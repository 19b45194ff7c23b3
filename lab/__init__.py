"""The ``kubelab`` command and the one-machine lab (network namespaces as nodes)."""
