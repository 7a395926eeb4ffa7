"""The one error a query check raises, on the client and on the server alike."""

from __future__ import annotations


class QueryError(ValueError):
    """A query that does not fit the schema. ``field`` is a dotted path into the job body."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message
