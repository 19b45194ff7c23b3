"""The scheduler: binds pods to nodes through ``pods/binding``.

``algorithm`` (pure filters and scores), ``scheduler`` (the informer-driven loop), ``run``
(``run_scheduler`` with leader election), ``cli`` (``kubelab scheduler``).
"""

from __future__ import annotations

from typing import Any


def run_scheduler(*args: Any, **kwargs: Any) -> None:
    """See ``controlplane.scheduler.run.run_scheduler`` (imported lazily: keeps ``algorithm`` light)."""
    from controlplane.scheduler.run import run_scheduler as _run

    _run(*args, **kwargs)
