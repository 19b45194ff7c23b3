"""Backends that write the proxy's rules: iptables-restore, python-iptables, and a fake."""
