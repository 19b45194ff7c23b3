"""``resource.Quantity``: the one parser of Kubernetes quantities (``100m``, ``1.5``, ``128Mi``, ``1e3``).

Role: validation (is this a quantity?), the scheduler (requests against allocatable), quota and
LimitRange admission and noded (cgroup limits) all read quantities through this module, so they
agree on what ``1.5Gi`` means. The grammar and the error wording are apimachinery's
(pkg/api/resource/quantity.go): a number, then a binary-SI suffix (``Ki``…``Ei``), a decimal-SI
suffix (``n u m "" k M G T P E``) or a decimal exponent (``e3``, ``E-2``).

Invariants: the result is an exact ``Decimal``; anything else raises ``QuantityError`` (a
``ValueError``) with Kubernetes' message. Parsed strings are cached (the same few quantities come in
object after object, and Decimals are immutable). Pure and thread-safe.
"""

from __future__ import annotations

import functools
import math
import re
from decimal import Decimal, InvalidOperation

QUANTITY_FORMAT_MESSAGE = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_EXPONENT = re.compile(r"[eE][-+]?[0-9]+")
_BINARY_SI = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL_SI = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}


class QuantityError(ValueError):
    """Not a Kubernetes quantity; the message is Kubernetes' own."""


def parse_quantity(value: str | int | float) -> Decimal:
    """A ``resource.Quantity`` as a Decimal; ``QuantityError`` if malformed."""
    if isinstance(value, bool):
        raise QuantityError(QUANTITY_FORMAT_MESSAGE)
    if isinstance(value, int | float):
        return Decimal(str(value))
    return _parse_text(value)


@functools.lru_cache(maxsize=4096)
def _parse_text(value: str) -> Decimal:
    m = _QUANTITY.match(value.strip())
    if m is None:
        raise QuantityError(QUANTITY_FORMAT_MESSAGE)
    number, suffix = m.groups()
    try:
        base = Decimal(number)
    except InvalidOperation:
        raise QuantityError(QUANTITY_FORMAT_MESSAGE) from None
    if suffix in _BINARY_SI:
        return base * _BINARY_SI[suffix]
    if suffix in _DECIMAL_SI:
        return base * _DECIMAL_SI[suffix]
    if _EXPONENT.fullmatch(suffix):
        return base * (Decimal(10) ** int(suffix[1:]))
    raise QuantityError(QUANTITY_FORMAT_MESSAGE)


@functools.lru_cache(maxsize=4096)
def milli_value(q: str | int | float) -> int:
    """Quantity in thousandths, rounded up (cpu ``100m`` → 100, ``1.5`` → 1500): ``MilliValue()``."""
    return math.ceil(parse_quantity(q) * 1000)


@functools.lru_cache(maxsize=4096)
def int_value(q: str | int | float) -> int:
    """Quantity as an integer, rounded up (memory ``128Mi`` → 134217728): ``Value()``."""
    return math.ceil(parse_quantity(q))
