"""The API server: the one gate to the cluster state (FastAPI/uvicorn over a ``Store``).

Module map (a request flows top to bottom):

- ``cli.py``        ``kubelab apiserver`` / ``kubelab controlplane``: flags → PKI → store → app → uvicorn
                    (TLS, client certificates verified against the cluster CA, httptools + uvloop).
- ``app.py``        ``create_app(store, options=...)``: routing of every path kube-apiserver serves,
                    authentication/authorization, content negotiation (JSON, Table), subresources.
- ``auth.py``       x509 client certificates and static bearer tokens → ``UserInfo``; the authorizer hook.
- ``httpio.py``     raw ASGI request/response helpers; JSON/YAML/protobuf body decoding (``protobuf.py``).
- ``resources.py``  the generic registry: Kubernetes object semantics over the revisioned store.
- ``admission.py``  defaulting, validation, namespace lifecycle, Service IP/port allocation (``allocators.py``).
- ``watch.py``      watch streams fed by the shared ``watchcache.WatchCache``.
- ``discovery.py``  ``/version``, ``/api``, ``/apis`` (legacy and aggregated discovery).
- ``proxy_kubelet.py`` ``pods/log`` and ``pods/exec|attach`` relayed to the node's kubelet API.
- ``metrics.py``    ``/metrics`` (Prometheus).

Invariants shared by all of them: objects are plain JSON dicts; ``metadata.resourceVersion`` is the
store's ``mod_revision``; every error is a ``Status``; nothing reaches the store unless it passed
authentication, authorization, decoding and admission.
"""
