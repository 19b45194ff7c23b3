"""Cluster DNS: an authoritative server for ``cluster.local`` fed by Services and EndpointSlices."""
