"""Serializer fields that read exactly what the OpenAPI document says they read.

The fields below refuse what DRF's own fields would quietly convert: DRF reads ``{"name": 0}`` as the
text ``"0"``, ``"yes"`` as true and ``"5"`` as 5, none of which the document allows. Each documents
itself precisely (types, lengths, patterns) in its ``openapi_schema`` method, so the document cannot
drift from what the field reads; :func:`document_field` tells drf-spectacular to use that method.

The operations documented with a JSON body also read the same fields form-encoded (DRF's default
parsers; clients and tests have posted forms): a form carries only text, so there the fields read
text as DRF does. The document states the JSON body only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers
from rest_framework.utils import html

from config import fields as plain_fields


class FieldSchemaExtension(OpenApiSerializerFieldExtension):
    """drf-spectacular reads a field's own ``openapi_schema(auto_schema, direction)``."""

    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        return self.target.openapi_schema(auto_schema, direction)


def document_field(field_class: type[serializers.Field]) -> type[serializers.Field]:
    """Document ``field_class`` (and its subclasses) by its own ``openapi_schema``; returns the class.

    drf-spectacular matches one extension to a class and its subclasses, so each class gets its own.
    """
    type(f"{field_class.__name__}Extension", (FieldSchemaExtension,), {"target_class": field_class})
    return field_class


# A JSON string of text: no NUL (PostgreSQL cannot store it; DRF refuses it too).
NO_NUL = r"^[^\x00]*$"
NON_EMPTY = r"^[^\x00]+$"
# ... with at least one character that is not white space (DRF trims white space before checking
# for blank text; Python's str.strip and \s agree on what white space is).
NOT_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"


def _form_input(field: serializers.Field) -> bool:
    """Whether the field reads a form (urlencoded or multipart), whose values can only be text.

    Such bodies are read as DRF reads them (``"5"`` is 5, ``"true"`` is true); the document states the
    JSON body, where every value has its type and none is converted.
    """
    return html.is_html_input(getattr(field.root, "initial_data", None))


class _StringOnly:
    """Refuse JSON numbers, booleans, lists and objects where text is documented."""

    default_error_messages = {"not_a_string": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("not_a_string")
        return super().to_internal_value(data)


class CharField(_StringOnly, serializers.CharField):
    def openapi_schema(self, auto_schema, direction) -> dict:
        schema: dict[str, Any] = {"type": "string"}
        if direction == "request":
            if self.allow_blank:
                # drf-spectacular adds the blank string as a second oneOf branch; this one must not match it.
                schema["pattern"] = NON_EMPTY
            else:
                schema["pattern"] = NOT_BLANK if self.trim_whitespace else NON_EMPTY
                schema["minLength"] = 1
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        return schema


class RegexField(_StringOnly, serializers.RegexField):
    """``schema_pattern``: the same pattern in the ECMA dialect OpenAPI uses (``$``, not ``\\Z``)."""

    def __init__(self, regex, *, schema_pattern: str, **kwargs):
        self.schema_pattern = schema_pattern
        super().__init__(regex, **kwargs)

    def openapi_schema(self, auto_schema, direction) -> dict:
        schema: dict[str, Any] = {"type": "string", "pattern": self.schema_pattern}
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        if self.min_length is not None:
            schema["minLength"] = self.min_length
        return schema


class ChoiceField(_StringOnly, serializers.ChoiceField):
    """One of fixed strings, documented inline (drf-spectacular's enum components would give the many
    ``kind`` and ``mode`` sets colliding names)."""

    def openapi_schema(self, auto_schema, direction) -> dict:
        return {"type": "string", "enum": [*self.choices, *([None] if self.allow_null else [])]}


class EmailField(_StringOnly, serializers.EmailField):
    def openapi_schema(self, auto_schema, direction) -> dict:
        schema: dict[str, Any] = {"type": "string", "format": "email"}
        if direction == "request":
            # Django's EmailValidator reads at most 320 characters; the sign-up field, what the account holds.
            schema["maxLength"] = self.max_length or 320
        return schema


class BooleanField(serializers.BooleanField):
    """JSON ``true`` or ``false`` only (DRF would read ``"yes"``, ``"on"``, ``1`` and more)."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if _form_input(self):
            return super().to_internal_value(data)
        if not isinstance(data, bool):
            self.fail("invalid")
        return data

    def openapi_schema(self, auto_schema, direction) -> dict:
        return {"type": "boolean"}


class IntegerField(plain_fields.IntegerField):
    """A JSON integer (DRF would read the text ``"5"`` as 5)."""

    default_error_messages = {"invalid": "Must be a whole number."}

    def to_internal_value(self, data):
        if _form_input(self):
            return super().to_internal_value(data)
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            self.fail("invalid")
        if isinstance(data, float) and not (math.isfinite(data) and data.is_integer()):
            self.fail("invalid")
        return super().to_internal_value(int(data))

    def openapi_schema(self, auto_schema, direction) -> dict:
        schema: dict[str, Any] = {"type": "integer"}
        if self.min_value is not None:
            schema["minimum"] = self.min_value
        if self.max_value is not None:
            schema["maximum"] = self.max_value
        return schema


class FloatField(plain_fields.FloatField):
    """A finite JSON number (DRF would read the text ``"1.5"`` as 1.5)."""

    default_error_messages = {"invalid": "Must be a number."}

    def to_internal_value(self, data):
        if not _form_input(self) and (isinstance(data, bool) or not isinstance(data, (int, float))):
            self.fail("invalid")
        return super().to_internal_value(data)

    def openapi_schema(self, auto_schema, direction) -> dict:
        schema: dict[str, Any] = {"type": "number"}
        if self.min_value is not None:
            schema["minimum"] = self.min_value
        if self.max_value is not None:
            schema["maximum"] = self.max_value
        return schema


def _plain_decimal_pattern(whole: int, places: int, *, positive: bool, at_most: Decimal | None) -> str:
    """A regex for plain decimal text (``12.5``, ``0.25``, ``.5``, ``3.``) with at most ``whole``
    digits before the point and ``places`` after it; ``positive`` excludes zero."""
    frac = rf"(\.[0-9]{{0,{places}}})?" if places else ""
    if at_most is not None:
        # Only [0, 0.1] is needed (delta caps): 0, 0.0..., 0.1, 0.10...
        assert at_most == Decimal("0.1") and not positive
        return rf"^(0\.?|0?\.0[0-9]{{0,{places - 1}}}|0?\.10{{0,{places - 1}}})$"
    if not positive:
        return rf"^([0-9]{{1,{whole}}}{frac}|\.[0-9]{{1,{places}}})$" if places else rf"^[0-9]{{1,{whole}}}$"
    alternatives = [rf"[1-9][0-9]{{0,{whole - 1}}}{frac}"]
    for zeros in range(places):
        rest = places - zeros - 1
        alternatives.append(rf"0?\.0{{{zeros}}}[1-9][0-9]{{0,{rest}}}")
    return "^(" + "|".join(alternatives) + ")$"


class DecimalField(plain_fields.DecimalField):
    """A decimal as the API reads it: a JSON string of decimal text, or a JSON number.

    The text is digits with an optional point (``12.5``, ``.5``, ``3.``) and an optional exponent
    (``1e-5``, which is how Python spells small floats); DRF's own DecimalField would also read a sign
    and surrounding white space, which are refused here. The document's pattern states the plain
    form exactly, with its digit limits; exponent notation is read as well, within the same limits.
    A JSON number is read as its shortest decimal spelling.
    """

    default_error_messages = {"invalid": "Must be a number, or a string of digits with an optional point and exponent."}

    def to_internal_value(self, data):
        # Decimal: the web forms pass their cleaned values through the API's serializers.
        if isinstance(data, bool) or not isinstance(data, (str, int, float, Decimal)):
            self.fail("invalid")
        if isinstance(data, str) and not re.fullmatch(r"[0-9]*\.?[0-9]*([eE][+-]?[0-9]+)?", data):
            self.fail("invalid")
        return super().to_internal_value(data)

    def openapi_schema(self, auto_schema, direction) -> dict:
        places = self.decimal_places or 0
        whole = (self.max_digits or 30) - places
        if direction == "response":
            return {"type": "string", "format": "decimal", "pattern": rf"^-?[0-9]{{1,{whole}}}(\.[0-9]{{{places}}})?$"}
        # The patterns cover the inputs the API has: a minimum of 0 or of one unit in the last place.
        step = Decimal(1).scaleb(-places)
        minimum = Decimal(self.min_value) if self.min_value is not None else None
        maximum = Decimal(self.max_value) if self.max_value is not None else None
        if minimum not in (0, step):
            raise ValueError(f"a decimal input with min_value {minimum} has no documented pattern")
        largest = Decimal(10) ** whole - step
        number: dict[str, Any] = {
            "type": "number" if places else "integer",
            "minimum": float(minimum),
            "maximum": float(min(maximum, largest) if maximum is not None else largest),
        }
        if places:
            number["multipleOf"] = float(step)
        text = {
            "type": "string",
            "pattern": _plain_decimal_pattern(whole, places, positive=minimum > 0, at_most=maximum),
            "maxLength": whole + places + 1,
        }
        limits = f"at most {whole} digits before the point and {places} after it"
        return {
            "anyOf": [text, number],
            "description": f"A decimal: a string of digits with an optional point, or a JSON number; {limits}. "
            "Exponent notation (`1e-5`) is read too.",
        }


for _field in (CharField, RegexField, ChoiceField, EmailField, BooleanField, IntegerField, FloatField, DecimalField):
    document_field(_field)


class ChoiceOutput(serializers.CharField):
    """A string the API answers from a fixed set, documented inline as an enum (drf-spectacular's
    enum components would give the many ``status`` and ``kind`` sets colliding names)."""

    def __init__(self, *, choices: Iterable[Any], **kwargs):
        self.values = [c[0] if isinstance(c, (tuple, list)) else c for c in choices]
        super().__init__(**kwargs)

    def openapi_schema(self, auto_schema, direction) -> dict:
        # OpenAPI 3.0: a nullable enum lists null among its values.
        return {"type": "string", "enum": [*self.values, *([None] if self.allow_null else [])]}


document_field(ChoiceOutput)
