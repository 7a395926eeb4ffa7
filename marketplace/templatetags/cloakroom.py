"""Template filters for the Cloakroom pages."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import template

from marketplace import charts

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


@register.filter
def percent(value: object) -> str:
    """A share of a budget (0 to 1) as a percentage: 0.28%, 12.5%, 100%; never 0% when something is used."""
    try:
        return charts.percent(float(str(value)))
    except ValueError:
        return str(value)


@register.filter
def rounded_up(value: object) -> str:
    """An epsilon or delta of a guarantee to three significant digits, rounded up."""
    try:
        return charts.rounded_up(float(str(value)))
    except ValueError:
        return str(value)
