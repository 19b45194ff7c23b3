"""The service proxy: Services and EndpointSlices rendered as kube-proxy's iptables rules.

Public surface (see each module's docstring):
- ``proxy.rules``: ``render(services, endpoint_slices, node, options) -> Ruleset`` (pure),
  ``ProxyOptions``, ``Ruleset`` (``.text()`` is iptables-save form), ``service_chain``,
  ``endpoint_chain``, ``owned_chain``;
- ``proxy.backend``: ``interface.Backend`` (``apply``/``apply_full``/``canary_present``/``cleanup``;
  ``apply_full`` takes an ``interface.StreamedRuleset``, a full sync still being rendered),
  ``restore.RestoreBackend(mode)``, ``iptc_backend.IptcBackend()``, ``fake.FakeBackend()``,
  ``detect.make_backend(choice)``;
- ``proxy.proxier.Proxier``: change trackers + bounded-frequency runner + one apply per sync;
- ``proxy.cli``: ``kubelab proxy``, ``kubelab proxy render``, ``kubelab proxy cleanup``.
"""
