"""Poll for a condition with a deadline — the only way tests wait (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    pass


def wait_for(
    condition: Callable[[], T | bool | None],
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition",
) -> T:
    """Call ``condition`` until it returns something truthy; return that, or fail at the deadline.

    Exceptions raised by ``condition`` count as "not yet"; the last one is shown on timeout.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    last_value: object = None
    while True:
        try:
            value = condition()
            if value:
                return value  # type: ignore[return-value]
            last_value = value
        except Exception as exc:  # "not yet"
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else f" (last value: {last_value!r})"
            raise WaitTimeout(f"timed out after {timeout}s waiting for {message}{detail}")
        time.sleep(interval)
