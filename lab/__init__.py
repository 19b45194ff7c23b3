"""The ``kubelab`` command and the one-machine lab (network namespaces as nodes)."""

# The lab's dashboard imports httpx directly: importing ``controlplane`` first applies its
# "no httpx CLI" memory fix (see controlplane/__init__.py) to the lab's processes too.
import controlplane  # noqa: F401
