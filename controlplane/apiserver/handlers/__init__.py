"""The resource handlers, one module per verb family, as kube-apiserver's
k8s.io/apiserver/pkg/endpoints/handlers: ``get`` (get, list), ``create``, ``update``, ``patch``,
``delete`` (delete, deletecollection), ``watch``, ``connect`` (log, exec, attach, portforward),
and ``rest`` (the ``RequestScope`` every handler receives, and the options they share).

Every handler has the signature ``(scope, req, info, send)``; ``routes.py`` picks one by verb.
"""
