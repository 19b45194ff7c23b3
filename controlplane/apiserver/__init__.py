"""The API server: the one gate to the cluster state (FastAPI over a ``Store``)."""
