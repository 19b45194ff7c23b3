"""kubelab's control plane: the API server, its store, the scheduler and the controllers.

Subpackages:
- ``api``: wire-level helpers shared by every component (resource table, errors, selectors,
  defaulting, validation, patches, tables, OpenAPI). Imports nothing server-side.
- ``client``: the client-go of this project (REST client, watch, informers, work queue, leader
  election). Imported by noded, proxy, the scheduler, the controllers and the lab.
- ``storage``: the ``Store`` interface and its backends (SQLite, etcd, memory).
- ``apiserver``: the HTTPS API server (FastAPI). The only code that touches a ``Store``.
- ``scheduler`` and ``controllers``: reconcile loops that talk only to the API.

Objects travel as plain JSON dictionaries (``dict[str, Any]``), as client-go's *unstructured*
objects do: the server stores what Kubernetes stores, unknown fields included, and each component
reads the fields it needs through small typed accessors.
"""
