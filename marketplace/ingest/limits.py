"""How big a table an upload may describe (:class:`IngestLimits`), and the two ways an upload is refused.

:class:`UploadRejected`: the file does not match its declared schema (or is not a table at all).
:class:`UploadTooLarge`: the file describes a bigger table than the limits allow.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.exceptions import ValidationFailed


class UploadRejected(Exception):
    """The file cannot be stored. ``problems`` are sentences a person can act on.

    ``columns`` says which declared column each problem is about, when it is about one: the column's
    name, then the part of its declaration the problem points at (``name``, ``kind``, ``lower``,
    ``upper``, ``categories``, or ``""`` for the column as a whole), then the sentences about it, which
    ``problems`` also says. Problems about the file itself (empty, unreadable, no data rows) name no column.
    """

    def __init__(
        self, problems: list[str], *, code: str = "invalid_file", columns: dict[str, dict[str, list[str]]] | None = None
    ) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.code = code
        self.columns = columns or {}


@dataclass(frozen=True)
class IngestLimits:
    """How big a table an upload may describe; the setting named beside each limit overrides it.

    The defaults keep one web worker's work on an upload to seconds and its memory to about a GiB:
    the whole file is parsed in the request, once as uploaded and once as the typed table stored.
    """

    #: Data rows (not counting a CSV header). ``CLOAKROOM_MAX_UPLOAD_ROWS``.
    max_rows: int = 1_000_000
    #: Columns in the file, declared or not (Parquet: leaf columns). ``CLOAKROOM_MAX_UPLOAD_COLUMNS``.
    max_columns: int = 1_000
    #: Uncompressed bytes: a Parquet footer's declared size of all its data, and the bytes of the
    #: declared columns once decoded. ``CLOAKROOM_MAX_UPLOAD_UNCOMPRESSED_BYTES``.
    max_uncompressed_bytes: int = 256 * 1024 * 1024
    #: Bytes of a CSV file's header row. ``CLOAKROOM_MAX_CSV_HEADER_BYTES``.
    max_header_bytes: int = 128 * 1024

    _SETTINGS = {
        "max_rows": "CLOAKROOM_MAX_UPLOAD_ROWS",
        "max_columns": "CLOAKROOM_MAX_UPLOAD_COLUMNS",
        "max_uncompressed_bytes": "CLOAKROOM_MAX_UPLOAD_UNCOMPRESSED_BYTES",
        "max_header_bytes": "CLOAKROOM_MAX_CSV_HEADER_BYTES",
    }

    @classmethod
    def from_settings(cls) -> IngestLimits:
        """The limits of the Django settings when they are configured, else the defaults."""
        try:
            # Lazy, so that this package stays importable (and testable) without Django configured.
            from django.conf import settings
            from django.core.exceptions import ImproperlyConfigured
        except ImportError:  # pragma: no cover - Django is always installed with the server
            return cls()
        try:
            return cls(
                **{
                    attr: int(getattr(settings, name))
                    for attr, name in cls._SETTINGS.items()
                    if hasattr(settings, name)
                }
            )
        except ImproperlyConfigured:
            return cls()


class UploadTooLarge(ValidationFailed):
    """The file describes a bigger table than :class:`IngestLimits` allows.

    Not a schema mismatch, so not an :class:`UploadRejected`: it is the service error itself (400,
    code ``file_too_large``, the same as the byte limit of the upload, naming the field ``file``),
    and carries ``limit`` (what was limited), ``maximum`` and, when known, ``found``.
    """

    code = "file_too_large"

    def __init__(self, problem: str, *, limit: str, maximum: int, found: int | None = None) -> None:
        extra: dict = {"limit": limit, "maximum": maximum}
        if found is not None:
            extra["found"] = found
        super().__init__(problem, fields={"file": [problem]}, extra=extra)
        self.problems = [problem]
