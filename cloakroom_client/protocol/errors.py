"""The errors of the protocol, raised on the client and on the server alike."""

from __future__ import annotations


class QueryError(ValueError):
    """A query that does not fit the schema. ``field`` is a dotted path into the job body."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


class HEError(Exception):
    """An HE step that cannot go on. ``problems`` are sentences a person can act on: the owner fixing a
    CSV or a keystore, the key holder reading why a ciphertext was refused."""

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems))


class ReleaseError(Exception):
    """A release spec that cannot be released as it is (nothing was posted)."""
