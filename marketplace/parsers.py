"""Reading JSON sent inside a request part (a multipart ``metadata`` or ``manifest``), strictly.

Python's ``json`` module reads ``NaN`` and ``Infinity``, which are not JSON and which no number field
of the API may hold; :func:`json_loads_strict` refuses them, and answers a body nested past Python's
recursion limit with a 400 instead of a server error.
"""

from __future__ import annotations

import json
from typing import Any

from config.exceptions import ValidationFailed


def _refuse_constant(constant: str) -> Any:
    raise ValueError(f"{constant} is not allowed")


def json_loads_strict(text: str | bytes, field: str) -> Any:
    """``text`` parsed as JSON, or a 400 ``invalid_json`` naming ``field``."""
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise ValidationFailed(
            f"{field} is nested too deeply to read.", code="invalid_json", fields={field: ["Nested too deeply."]}
        ) from None
    except (ValueError, TypeError) as exc:
        raise ValidationFailed(
            f"{field} is not valid JSON: {exc}", code="invalid_json", fields={field: [f"Not valid JSON: {exc}"]}
        ) from None
