"""Number fields that read only plain ASCII numbers.

Python's ``Decimal``, ``float`` and ``int`` accept underscores between digits ("1_0" is 10) and
digits of other scripts ("١٠" and "１０" are 10 too). A budget, a price or a bound typed that way is
almost certainly a mistake, and reading it as another number silently charges or declares the wrong
thing; so every number the API and the forms read goes through these fields, which refuse such text
with a 400 naming the field before converting it. Numbers sent as JSON numbers are unaffected.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from rest_framework import serializers

MESSAGE = "Write the number with plain digits (0-9), an optional point and exponent; no underscores or other scripts."


def plain(value: Any) -> bool:
    """False for text Python would read as a number only through an underscore or a digit of
    another script; anything else (numbers, None, other text) is left to the field's own checks."""
    return not isinstance(value, str) or ("_" not in value and value.isascii())


class _Plain:
    def to_internal_value(self, data):
        if not plain(data):
            raise serializers.ValidationError(MESSAGE)
        return super().to_internal_value(data)


class DecimalField(_Plain, serializers.DecimalField):
    pass


class FloatField(_Plain, serializers.FloatField):
    pass


class IntegerField(_Plain, serializers.IntegerField):
    pass


class _FormPlain:
    def to_python(self, value):
        if not plain(value):
            raise ValidationError(MESSAGE, code="invalid")
        return super().to_python(value)


class FormDecimalField(_FormPlain, forms.DecimalField):
    pass


class FormFloatField(_FormPlain, forms.FloatField):
    pass


class FormIntegerField(_FormPlain, forms.IntegerField):
    pass
