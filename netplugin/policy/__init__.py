"""NetworkPolicy enforcement on a node: ``plan`` (pure rules), ``driver`` (iptables), ``controller``."""
