"""The one quantity parser: apimachinery's grammar, exact Decimals, Kubernetes' error message."""

from __future__ import annotations

from decimal import Decimal

import pytest

from controlplane.api.quantity import QUANTITY_FORMAT_MESSAGE, QuantityError, int_value, milli_value, parse_quantity


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", Decimal("0.1")),
        ("1.5", Decimal("1.5")),
        ("128Mi", Decimal(128 * 2**20)),
        ("1G", Decimal(10**9)),
        ("1e3", Decimal(1000)),
        ("5E-2", Decimal("0.05")),
        ("0", Decimal(0)),
        (2, Decimal(2)),
        (0.25, Decimal("0.25")),
    ],
)
def test_quantities_parse_exactly(text: str | int | float, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("bad", ["", "1.5.5", "12Q", "1K", "Mi", "one", "1e", True])
def test_a_malformed_quantity_is_refused_with_kubernetes_message(bad: str | bool) -> None:
    with pytest.raises(QuantityError, match=r"quantities must match the regular expression") as e:
        parse_quantity(bad)
    assert str(e.value) == QUANTITY_FORMAT_MESSAGE and isinstance(e.value, ValueError)


def test_milli_and_int_values_round_up_as_kubernetes_does() -> None:
    assert milli_value("100m") == 100 and milli_value("1.5") == 1500 and milli_value("0.1m") == 1
    assert int_value("128Mi") == 134217728 and int_value("0.5") == 1
