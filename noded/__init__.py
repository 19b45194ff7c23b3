"""noded, the node agent (kubelet): registers its node and runs pods with runc.

Map of the package (each module's docstring has the details):

- ``agent``: ``Noded`` — Node registration, Lease, conditions, podCIDR → CNI config, pod informer +
  workers, PLEG relist, static (mirror) pods, orphan cleanup, image GC; ``server``: the kubelet API.
- ``podsync``: pure ``compute_pod_actions`` / ``compute_pod_status`` (the state table);
  ``podworker``: ``PodWorker.sync_pod``, the executor; ``probes``; ``volumes``; ``names``.
- ``runtime``: the CRI-shaped ``ContainerRuntime`` (``interface``), ``RuncRuntime`` (``runc``, with the
  C shim in ``shim/shim.c``), ``FakeRuntime`` (``fake``), the pure OCI config builder (``oci``).
- ``images``: ``ImageStore`` (skopeo pulls, content-addressed blobs, layers unpacked once, GC).
- ``network``: ``CniInvoker`` (a small libcni), ``render_conflist``, ``NetnsManager``.
- ``host``: ``CommandRunner`` (the only place commands run), ``nsnet`` (sockets in another netns).
- ``cli``: ``kubelab noded``, ``kubelab noded cleanup``, ``kubelab image import|list``.
"""
