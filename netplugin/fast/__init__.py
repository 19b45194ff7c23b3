"""The CNI plugins' speed machinery, fenced off from the teaching path (see README.md here).

Each module replaces a standard-library or third-party module on the plugin's exec path, where
every millisecond of import counts against the CNI ADD (a Go reference ADD takes ~12 ms): the
reader following a CNI ADD starts at ``netplugin/bridge.py`` and ``netplugin/ipam/`` and can treat
this package as "the standard library, faster". Nothing here knows about bridges or IPAM.
"""
