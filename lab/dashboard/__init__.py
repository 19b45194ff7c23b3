"""kubelab's web dashboard (issue 13): a read-only page on the host side of the lab.

Modules: ``graph`` (pure: cluster objects → boxes/lines → DOT; Graphviz lays it out), ``hub``
(informers → one rendered state, pushed to pages), ``server`` (FastAPI: token auth, SSE, GET only),
``inspect`` (the machine view: ``kubelab trace`` for a Service, a pod's netns, a followed log),
``setup`` (credentials, the lab component, the URL — light, for ``kubelab up``/``status``), ``cli``
(``kubelab dashboard``, ``kubelab topology``), ``static/`` (the page: small vanilla JS).
"""
