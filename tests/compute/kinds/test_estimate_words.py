"""The numbers an estimate's sentences print: a half-width rounded up, never down, to three significant
digits, and budgets without trailing zeros."""

from __future__ import annotations

from decimal import Decimal

import pytest

from compute.kinds.base import plain_decimal, plain_number


@pytest.mark.parametrize(
    "value,text",
    [
        (0.9312, "0.932"),
        (0.93, "0.93"),
        (1.6465187866608517, "1.65"),
        (99.95, "100"),
        (1.0, "1"),
        (40.2, "40.2"),
        (1234.5, "1,240"),
        (599146.3, "600,000"),
        (0.00123456, "0.00124"),
    ],
)
def test_a_halfwidth_is_rounded_up_to_three_significant_digits(value, text):
    assert plain_number(value) == text
    assert float(text.replace(",", "")) >= value


@pytest.mark.parametrize(
    "value,text", [(Decimal("1.500000"), "1.5"), (Decimal("10"), "10"), (Decimal("0.000000"), "0"), (Decimal("2"), "2")]
)
def test_a_budget_figure_is_printed_without_trailing_zeros_or_an_exponent(value, text):
    assert plain_decimal(value) == text
