"""The OpenAPI document's shared pieces, and serializer fields that read exactly what it says.

One import for the apps' APIs (``from config import openapi``), three modules behind it:
:mod:`config.openapi.operations` (tags, :func:`api_operation`, errors, pages, the schema hook),
:mod:`config.openapi.fields` (strict, self-documenting fields) and :mod:`config.openapi.components`
(hand-written schema components).

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

from config.openapi.components import (
    ComponentSerializer,
    JsonSchemaField,
    MethodField,
    component_schema,
    component_serializer,
    ref,
    register_component,
    use_component,
)
from config.openapi.fields import (
    NO_NUL,
    NON_EMPTY,
    NOT_BLANK,
    BooleanField,
    CharField,
    ChoiceField,
    ChoiceOutput,
    DecimalField,
    EmailField,
    FieldSchemaExtension,
    FloatField,
    IntegerField,
    RegexField,
    document_field,
)
from config.openapi.operations import (
    ERROR_DESCRIPTIONS,
    PAGE_PARAMETER,
    RETRY_AFTER,
    TAGS,
    WWW_AUTHENTICATE,
    ErrorDetailSerializer,
    ErrorSerializer,
    Pagination,
    api_operation,
    attachment_header,
    error_responses,
    paginated,
    postprocess_schema,
)

__all__ = [
    "ERROR_DESCRIPTIONS",
    "NON_EMPTY",
    "NOT_BLANK",
    "NO_NUL",
    "PAGE_PARAMETER",
    "RETRY_AFTER",
    "TAGS",
    "WWW_AUTHENTICATE",
    "BooleanField",
    "CharField",
    "ChoiceField",
    "ChoiceOutput",
    "ComponentSerializer",
    "DecimalField",
    "EmailField",
    "ErrorDetailSerializer",
    "ErrorSerializer",
    "FieldSchemaExtension",
    "FloatField",
    "IntegerField",
    "JsonSchemaField",
    "MethodField",
    "Pagination",
    "RegexField",
    "api_operation",
    "attachment_header",
    "component_schema",
    "component_serializer",
    "document_field",
    "error_responses",
    "paginated",
    "postprocess_schema",
    "ref",
    "register_component",
    "use_component",
]
