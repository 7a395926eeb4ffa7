"""The OpenAPI document's shared pieces, and serializer fields that read exactly what it says.

The document (``GET /api/v1/schema/``, drf-spectacular) is the API's contract, and
``tests/integration/test_openapi_schemathesis.py`` holds the server to it: every request the
document calls valid must be read as such, every request it calls invalid must be refused with a
4xx, and every answer must be one the operation documents, in the shape it documents. So:

* :func:`api_operation` documents an operation: its tag, summary, body and answers, plus the error
  answers it can give, all in the one error shape (:class:`ErrorSerializer`, config/errors.py)
  and a 429 with ``Retry-After`` for every operation (accounts/throttling.py).
* :func:`paginated` documents a page of ``PageNumberPagination`` (``count``, ``next``,
  ``previous``, ``results``) as list operations answer it.
* The fields below refuse what DRF's own fields would quietly convert: DRF reads ``{"name": 0}``
  as the text ``"0"``, ``"yes"`` as true and ``"5"`` as 5, none of which the document allows.
  Each documents itself precisely (types, lengths, patterns), so the document cannot drift from
  what the field reads.
* :class:`JsonSchemaField` is a JSON value documented by a hand-written schema component, for
  the bodies whose shape no serializer states (job queries, HE manifests).

The operations documented with a JSON body also read the same fields form-encoded (DRF's default
parsers; clients and tests have posted forms): a form carries only text, so there the fields read
text as DRF does. The document states the JSON body only.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from drf_spectacular.extensions import (
    OpenApiSerializerExtension,
    OpenApiSerializerFieldExtension,
    OpenApiViewExtension,
)
from drf_spectacular.plumbing import ResolvedComponent
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.utils import html

from config import fields as plain_fields

# ---------------------------------------------------------------------------------------------
# Tags: every operation belongs to exactly one, in this order.

TAGS = {
    "accounts": "Sign-up, the caller's profile and API keys.",
    "datasets": "The catalogue: list, upload (DP), publish and suspend datasets; an owner's budget view.",
    "purchases": "Privacy budget bought on a dataset, and its ledger.",
    "jobs": "Queries on purchased budget: estimate, submit, follow, cancel, download.",
    "he": "Encrypted (HE) datasets: bundle upload, key escrow, and the key holder's release of HE jobs.",
    "health": "Whether this web process reaches its database and broker.",
}

# ---------------------------------------------------------------------------------------------
# The one error shape (config/errors.py error_body).


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(
        help_text="Machine-readable: `invalid`, `invalid_query`, `not_authenticated`, `forbidden`, `not_found`, "
        "`throttled`, `payload_too_large`, `unsupported_media_type`, or a specific code such as "
        "`insufficient_budget` or `not_an_owner`."
    )
    message = serializers.CharField(help_text="What went wrong, for a person.")
    fields = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        help_text="Reasons by field, as dotted paths into the request (`query.filters.0.value`); empty when "
        "the error is not about a field.",
    )
    limit_bytes = serializers.IntegerField(required=False, help_text="413: the body size limit.")
    epsilon_remaining = serializers.CharField(
        required=False, help_text="409 `insufficient_budget` on a job: epsilon left on the purchase."
    )
    delta_remaining = serializers.CharField(
        required=False, help_text="409 `insufficient_budget` on a job: delta left on the purchase."
    )
    epsilon_available = serializers.CharField(
        required=False, help_text="409 `insufficient_budget` on a purchase: epsilon left for sale."
    )


class ErrorSerializer(serializers.Serializer):
    """Every error answer of the API: {"error": {"code", "message", "fields"}}."""

    error = ErrorDetailSerializer()


ERROR_DESCRIPTIONS = {
    400: "The request is not valid: `fields` names each offending field (a dotted path into the body or "
    "the name of a query parameter or header).",
    401: "Credentials were sent but are not valid (or none were sent where they are required).",
    403: "The caller may not do this: the wrong role (owner or buyer), or a session request without its CSRF token.",
    404: "No such object for this caller (another account's objects do not exist for it), or no such page.",
    409: "The request conflicts with the object's state (see `code`).",
    413: "The request body is larger than the server reads.",
    415: "The request body's Content-Type is not one this operation reads.",
    429: "Too many requests, or too many failed credentials, from this client: wait `Retry-After` seconds.",
}


def error_responses(*statuses: int) -> dict[int, OpenApiResponse]:
    return {status: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[status]) for status in statuses}


RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    OpenApiTypes.INT,
    OpenApiParameter.HEADER,
    response=[429],
    description="Seconds to wait before trying again.",
)
WWW_AUTHENTICATE = OpenApiParameter(
    "WWW-Authenticate",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    response=[401],
    description="The scheme to authenticate with (`Bearer`).",
)

_UNSET: Any = object()


def api_operation(
    *,
    tag: str,
    summary: str,
    responses: Mapping[Any, Any],
    errors: Iterable[int] = (),
    description: str | None = None,
    request: Any = _UNSET,
    parameters: Iterable[OpenApiParameter] = (),
    auth: list | None = None,
    operation_id: str | None = None,
):
    """``extend_schema`` for one operation, with its error answers in the one error shape.

    ``errors`` lists the 4xx statuses the operation can answer besides 429, which every operation
    can (rate limits and credential lockouts).
    """
    if tag not in TAGS:
        raise ValueError(f"unknown tag {tag!r}")
    statuses = sorted({*errors, 429})
    headers = [RETRY_AFTER] + ([WWW_AUTHENTICATE] if 401 in statuses else [])
    kwargs: dict[str, Any] = {
        "tags": [tag],
        "summary": summary,
        "responses": {**responses, **error_responses(*statuses)},
        "parameters": [*parameters, *headers],
    }
    if description is not None:
        kwargs["description"] = description
    if request is not _UNSET:
        kwargs["request"] = request
    if auth is not None:
        kwargs["auth"] = auth
    if operation_id is not None:
        kwargs["operation_id"] = operation_id
    return extend_schema(**kwargs)


PAGE_PARAMETER = OpenApiParameter(
    "page",
    {"type": "integer", "minimum": 1},
    OpenApiParameter.QUERY,
    description="Page number, from 1 (20 items a page). A page past the last is a 404.",
)


class Pagination(PageNumberPagination):
    """DRF's page-number pagination, reading ``?page=`` strictly: an empty value is a 404 like any
    other page that is not a number, instead of page 1."""

    def get_page_number(self, request, paginator):
        number = request.query_params.get(self.page_query_param)
        if number is None:
            return 1
        if number in self.last_page_strings:
            return paginator.num_pages
        return number


def paginated(item: type[serializers.Serializer] | serializers.Serializer, name: str) -> serializers.Serializer:
    """A page of ``PageNumberPagination`` as the list operations answer it."""
    return inline_serializer(
        name,
        {
            "count": serializers.IntegerField(min_value=0, help_text="Items on all pages."),
            "next": serializers.URLField(allow_null=True, help_text="The next page, or null on the last."),
            "previous": serializers.URLField(allow_null=True, help_text="The previous page, or null on the first."),
            "results": serializers.ListField(child=item() if isinstance(item, type) else item),
        },
    )


# ---------------------------------------------------------------------------------------------
# Hand-written schema components.

_COMPONENTS: dict[str, dict] = {}


def register_component(name: str, schema: dict) -> dict:
    """Declare a schema component; returns its ``$ref``. Components may refer to one another."""
    _COMPONENTS[name] = schema
    return ref(name)


def ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _refs(node: Any) -> Iterable[str]:
    if isinstance(node, dict):
        target = node.get("$ref")
        if isinstance(target, str) and target.startswith("#/components/schemas/"):
            yield target.rsplit("/", 1)[1]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _use_component(auto_schema, name: str) -> dict:
    """Put a hand-written component, and every component it refers to, into the document."""
    pending, seen = [name], set()
    while pending:
        current = pending.pop()
        if current in seen or current not in _COMPONENTS:
            continue
        seen.add(current)
        # A copy: drf-spectacular's hooks rewrite component schemas in place (enums become components).
        component = ResolvedComponent(
            name=current, type=ResolvedComponent.SCHEMA, schema=copy.deepcopy(_COMPONENTS[current]), object=current
        )
        auto_schema.registry.register_on_missing(component)
        pending.extend(_refs(_COMPONENTS[current]))
    return ref(name)


class JsonSchemaField(serializers.JSONField):
    """Any JSON value, documented by the hand-written component ``component``; the view or the
    service checks it (and says which part is wrong)."""

    def __init__(self, *, component: str, **kwargs):
        self.component = component
        super().__init__(**kwargs)

    def openapi_schema(self, auto_schema, direction) -> dict:
        target = _use_component(auto_schema, self.component)
        return {"allOf": [target], "nullable": True} if self.allow_null else target


# ---------------------------------------------------------------------------------------------
# Fields that read only what they document.

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


class _Extension(OpenApiSerializerFieldExtension):
    """drf-spectacular reads these fields' own ``openapi_schema``."""

    match_subclasses = True

    def map_serializer_field(self, auto_schema, direction):
        return self.target.openapi_schema(auto_schema, direction)


# One extension per field class (drf-spectacular matches an extension to a class and its subclasses).
for _field in (
    CharField,
    RegexField,
    ChoiceField,
    EmailField,
    BooleanField,
    IntegerField,
    FloatField,
    DecimalField,
    JsonSchemaField,
):
    type(f"{_field.__name__}Extension", (_Extension,), {"target_class": _field})


class ChoiceOutput(serializers.CharField):
    """A string the API answers from a fixed set, documented inline as an enum (drf-spectacular's
    enum components would give the many ``status`` and ``kind`` sets colliding names)."""

    def __init__(self, *, choices: Iterable[Any], **kwargs):
        self.values = [c[0] if isinstance(c, (tuple, list)) else c for c in choices]
        super().__init__(**kwargs)

    def openapi_schema(self, auto_schema, direction) -> dict:
        # OpenAPI 3.0: a nullable enum lists null among its values.
        return {"type": "string", "enum": [*self.values, *([None] if self.allow_null else [])]}


type("ChoiceOutputExtension", (_Extension,), {"target_class": ChoiceOutput})


class MethodField(serializers.SerializerMethodField):
    """A SerializerMethodField documented by a hand-written component (``component``) or schema."""

    def __init__(self, *, component: str | None = None, schema: dict | None = None, **kwargs):
        self.component, self.schema = component, schema
        super().__init__(**kwargs)

    def openapi_schema(self, auto_schema, direction) -> dict:
        if self.component is not None:
            target = _use_component(auto_schema, self.component)
            return {"allOf": [target], "nullable": True} if self.allow_null else target
        return component_schema(auto_schema, copy.deepcopy(self.schema or {}))


type("MethodFieldExtension", (_Extension,), {"target_class": MethodField})


def component_schema(auto_schema, node: dict) -> dict:
    """``node`` with every hand-written component it refers to put into the document."""
    for name in _refs(node):
        _use_component(auto_schema, name)
    return node


class ComponentSerializer(serializers.Serializer):
    """A body documented by a hand-written component (``component``), for the answers whose shape a
    service builds (``component_serializer("HeKeyPlan")``). Use it for every mention of that component."""

    component: str = ""


def component_serializer(component: str) -> type[ComponentSerializer]:
    if component not in _COMPONENTS:
        raise ValueError(f"no component {component!r}")
    return type(f"{component}Serializer", (ComponentSerializer,), {"component": component, "__module__": __name__})


class _ComponentSerializerExtension(OpenApiSerializerExtension):
    target_class = ComponentSerializer
    match_subclasses = True

    def get_name(self, auto_schema, direction):
        return self.target.component

    def map_serializer(self, auto_schema, direction):
        return component_schema(auto_schema, copy.deepcopy(_COMPONENTS[self.target.component]))


def postprocess_schema(result, generator, request, public):
    """drf-spectacular hook (SPECTACULAR_SETTINGS): the tags in order, with their descriptions."""
    result["tags"] = [{"name": name, "description": description} for name, description in TAGS.items()]
    return result


class _HealthDocumentation(OpenApiViewExtension):
    """GET /api/v1/health/ documented here: config/health.py keeps to the probe itself."""

    target_class = "config.health.HealthApi"

    def view_replacement(self):
        health = inline_serializer(
            "Health",
            {
                # Plain strings, not two ChoiceFields: one choice set would get two enum names.
                "database": serializers.CharField(help_text='"ok" or "unreachable"'),
                "broker": serializers.CharField(help_text='"ok" or "unreachable"'),
                "worker": inline_serializer("HealthWorker", {"last_seen": serializers.DateTimeField(allow_null=True)}),
            },
        )

        class HealthApi(self.target_class):
            @api_operation(
                tag="health",
                summary="Is this web process able to reach its database and broker?",
                description="Open to anyone, credentials ignored. 200 while the database and the broker both "
                "answer, 503 (the same body) when either does not; the body says which, and when a worker was "
                "last seen.",
                responses={
                    200: OpenApiResponse(health, description="Both answer."),
                    503: OpenApiResponse(health, description="The database or the broker does not answer."),
                },
                auth=[],
            )
            def get(self, request):
                return super().get(request)

        return HealthApi
