"""Template filters for the Cloakroom pages."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template

register = template.Library()


@register.filter
def exact(value: object) -> str:
    """An exact Decimal without trailing zeros or exponent: 10.500000 -> "10.5", 10 -> "10".

    Budgets are stored with six decimal places; showing them all ("1.000000") is noise, and
    ``Decimal.normalize`` alone would print 10 as "1E+1".
    """
    if value is None or value == "":
        return ""
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if not number.is_finite():
        return str(number)
    text = f"{number.normalize():f}"
    return "0" if text in {"-0", "0"} else text
