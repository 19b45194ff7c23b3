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

import sys as _sys

# httpx's package __init__ imports its command-line client (``httpx._main``) when rich, click and
# pygments are importable, and in our venv they are (import-linter, a dev tool, needs rich): ~6 MB
# of resident memory in every long-lived component, for a CLI no component runs. A ``None`` entry in
# sys.modules makes that import fail, which httpx handles (it falls back to a stub ``main``).
# Every component imports ``controlplane`` (its client) before httpx, so this one place covers all.
_sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
