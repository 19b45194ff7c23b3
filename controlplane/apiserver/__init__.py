"""The API server: the one gate to the cluster state (FastAPI/uvicorn over a ``Store``).

Module map (a request flows top to bottom):

- ``cli.py``        ``kubelab apiserver`` / ``kubelab controlplane``: flags → PKI → store → app → uvicorn
                    (TLS, client certificates verified against the cluster CA, httptools + uvloop).
- ``app.py``        ``create_app(store, options=...)`` and ``ApiServer``: builds the parts into one
                    ``RequestScope``; start-up (bootstrap objects, namespace cache, Event expiry).
- ``routes.py``     the request path: errors → ``Status``, health, discovery, OpenAPI, /metrics, then
                    a resource path → verb → authorization → the verb's handler.
- ``requestinfo.py`` the URL parsed into a ``RequestInfo`` (group, version, resource, namespace, name,
                    subresource) and the HTTP method → API verb.
- ``handlers/``     one module per verb family (``get`` get/list, ``create``, ``update``, ``patch``,
                    ``delete``, ``watch``, ``connect``), over ``rest.RequestScope``.
- ``subresources.py`` ``pods/binding``, ``pods/eviction``, ``*/scale``.
- ``auth.py``       x509 client certificates and static bearer tokens → ``UserInfo``; the authorizer hook.
- ``authz/``        ``--authorization-mode`` (Node, RBAC): bootstrap policy, impersonation, RBAC escalation
                    prevention, NodeRestriction, SubjectAccessReview & co. (see its ``__init__``).
- ``httpio.py``     raw ASGI request/response helpers; JSON/YAML/protobuf body decoding (``protobuf.py``).
- ``resources.py``  the generic registry: Kubernetes object semantics over the revisioned store.
- ``strategy.py``   the per-kind strategy: typed decode, PrepareForCreate/Update, graceful deletion.
- ``admission.py``  defaulting, validation, namespace lifecycle, Service IP/port allocation (``allocators.py``).
- ``watch.py``      watch streams fed by the shared ``watchcache.WatchCache``.
- ``discovery.py``  ``/version``, ``/api``, ``/apis`` (legacy and aggregated discovery).
- ``proxy_kubelet.py`` ``pods/log`` and ``pods/exec|attach`` relayed to the node's kubelet API.
- ``metrics.py``    ``/metrics`` (Prometheus).

Invariants shared by all of them: objects are plain JSON dicts; ``metadata.resourceVersion`` is the
store's ``mod_revision``; every error is a ``Status``; nothing reaches the store unless it passed
authentication, authorization, decoding and admission.

Where the CPU of a request goes (one event loop; Python runs one thread at a time): creates do all
their work on the loop and hand only the write to the store (``Store.create_nowait``: sqlite's
committer thread batches every waiting create into one fsync); other verbs run their store work
on a thread pool. Responses leave in one TLS write; the watch cache keeps stored bytes, not
decoded objects, and the process freezes its startup objects for the garbage collector — Python's
collector stops the world, so cyclic garbage per request and big heaps show up as latency tails.
"""
