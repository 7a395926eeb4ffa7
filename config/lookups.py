"""One way to say "get it, or it does not exist for you": :func:`get_or_404`.

Selectors and services look objects up by an id that came from a URL or a request body, limited to
what the caller may see. A missing object, another account's object and an id that is not a number
all answer the same 404 (:class:`config.exceptions.NotFound`), so the answer never confirms that
someone else's object exists. This module is the one place that rule is written.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Manager, Model, QuerySet

from config.exceptions import NotFound

M = TypeVar("M", bound=Model)


def get_or_404(
    queryset: QuerySet[M] | Manager[M], *, message: str, fields: dict[str, list[str]] | None = None, **filters: Any
) -> M:
    """The one object of ``queryset`` (a queryset or a manager, ``Dataset.objects``) matching ``filters``.

    Raises :class:`NotFound` with ``message`` (and ``fields``, when the 404 is about one field of a
    request body) when there is none, and also when a filter value cannot be compared at all (an id
    that is not a number raises ValueError or TypeError in the query), since to the caller that is
    the same answer: no such object.
    """
    try:
        return queryset.get(**filters)
    except (queryset.model.DoesNotExist, ValueError, TypeError):
        raise NotFound(message, fields=fields) from None
