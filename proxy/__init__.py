"""The service proxy: Services and EndpointSlices rendered as kube-proxy's iptables rules."""
