"""The scheduler: binds pods to nodes through ``pods/binding``."""
