"""The New dataset page: an owner uploads a DP dataset's file and declares its schema.

Three things make it work on real files:

- **Columns offered from the header.** Choosing a file sends the form to read the file's header
  (htmx; the "Read the columns from the file" button without JavaScript): its columns are offered as
  rows with a kind guessed from their values' type (:mod:`marketplace.ingest.header`). Bounds and
  categories are left empty for the owner to declare: they are never read off the data.
- **Errors beside the column.** A declared column that does not match the file (missing, a value
  outside its bounds, an undeclared category, the wrong kind) is reported in that column's row; only a
  problem of the file itself is shown beside the file field.
- **The file is kept.** When the page comes back with an error, the file chosen is kept encrypted as a
  pending upload (:mod:`marketplace.pending_uploads`) and the page carries its token, so the owner
  corrects the form and submits again without choosing the file again.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files.base import ContentFile
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from config.exceptions import ServiceError, ValidationFailed
from marketplace import services
from marketplace.forms import (
    COLUMNS_PREFIX,
    MAX_COLUMN_ROWS,
    ColumnForm,
    ColumnFormSet,
    DatasetForm,
    attach_upload_error,
    column_formset_from_rows,
    posted_column_rows,
    show_error,
    validate_dataset_metadata,
)
from marketplace.ingest import HeaderReport, UploadRejected, inspect_header
from marketplace.pending_uploads import (
    PendingUpload,
    pending_upload_discard,
    pending_upload_get,
    pending_upload_keep,
    pending_upload_lifetime,
    pending_upload_read,
)

# The hidden field that carries a kept file's token from one try to the next.
PENDING_FIELD = "pending_upload"
KEPT_FILE_GONE = (
    "The file kept from your last try is no longer here (kept files are deleted after a while); choose it again."
)
NO_FILE = "Choose the data file (CSV or Parquet)."


def _require_owner(request: HttpRequest) -> None:
    if not request.user.is_owner:
        raise PermissionDenied("Only accounts with the owner role can list datasets.")


@dataclass
class _Chosen:
    """The file of this try: newly chosen (``data`` read, not kept yet) or the kept one, or neither."""

    data: bytes | None = None
    name: str = ""
    new: bool = False
    kept: PendingUpload | None = None
    problem: str = ""


def _chosen_file(request: HttpRequest) -> _Chosen:
    """The file this try is about: one chosen now (it replaces a kept one), else the kept one."""
    kept = pending_upload_get(session=request.session, owner=request.user, token=request.POST.get(PENDING_FIELD, ""))
    upload = request.FILES.get("file")
    if upload is not None:
        try:
            return _Chosen(data=services.read_upload(upload), name=upload.name or "", new=True, kept=kept)
        except ValidationFailed as exc:  # over the size limit: refused whole, never kept
            return _Chosen(kept=kept, problem=exc.fields["file"][0])
    if kept is not None:
        data = pending_upload_read(session=request.session, pending=kept)
        if data is None:
            return _Chosen(problem=KEPT_FILE_GONE)
        return _Chosen(data=data, name=kept.name, kept=kept)
    return _Chosen(problem=KEPT_FILE_GONE if request.POST.get(PENDING_FIELD) else NO_FILE)


def _keep(request: HttpRequest, chosen: _Chosen) -> PendingUpload | None:
    """Keep a newly chosen file for the next try (replacing the kept one); the kept one stays otherwise."""
    if chosen.new and chosen.data is not None:
        replaces = chosen.kept.token if chosen.kept else ""
        chosen.kept = pending_upload_keep(
            session=request.session, owner=request.user, data=chosen.data, name=chosen.name, replaces=replaces
        )
        chosen.new = False
    return chosen.kept


def _discard(request: HttpRequest, chosen: _Chosen) -> None:
    if chosen.kept is not None:
        pending_upload_discard(session=request.session, token=chosen.kept.token)
        chosen.kept = None


def _page(request: HttpRequest, context: dict, status: int = 200) -> HttpResponse:
    context.setdefault("kept", None)
    context.setdefault("offered", None)
    context["kept_minutes"] = max(pending_upload_lifetime() // 60, 1)
    return render(request, "marketplace/dataset_new.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def dataset_new(request: HttpRequest) -> HttpResponse:
    _require_owner(request)
    if request.method != "POST":
        formset = ColumnFormSet(prefix=COLUMNS_PREFIX)
        formset.column_list_errors = []
        return _page(request, {"form": DatasetForm(), "formset": formset})
    if "add_column" in request.POST:
        return _add_column(request)
    if "inspect" in request.POST:
        return _inspect(request)
    return _submit(request)


def _add_column(request: HttpRequest) -> HttpResponse:
    """Without JavaScript, "Add column" draws the page again with the rows typed so far plus one blank
    row. Nothing is validated yet, so no errors are shown for half-filled rows; a chosen file is kept."""
    chosen = _chosen_file(request)
    form = DatasetForm(initial=request.POST.dict())
    if chosen.data is None and chosen.problem != NO_FILE:
        show_error(form, "file", chosen.problem)
    formset = column_formset_from_rows([*posted_column_rows(request.POST), {}])
    messages.info(request, "A blank column row was added.")
    return _page(request, {"form": form, "formset": formset, "kept": _keep(request, chosen)})


def _offered_rows(typed: list[dict], report: HeaderReport) -> list[dict]:
    """The rows the owner named, as typed, then the header's columns not declared yet (name and kind only)."""
    named = [row for row in typed if str(row.get("name", "")).strip()]
    declared = {str(row["name"]).strip() for row in named}
    longest = ColumnForm.base_fields["name"].max_length or 100
    if any(len(column.name) > longest for column in report.columns):
        report.skipped.append(f"columns whose names are longer than {longest} characters")
    offered = [
        {"name": column.name, "kind": column.kind, "offered": True}
        for column in report.columns
        if column.name not in declared and len(column.name) <= longest
    ]
    room = max(MAX_COLUMN_ROWS - len(named), 0)
    if len(offered) > room:
        report.skipped.append(f"{len(offered) - room} more columns (a dataset declares at most {MAX_COLUMN_ROWS})")
    return named + offered[:room]


def _read_header(request: HttpRequest, chosen: _Chosen) -> HeaderReport | None:
    """The chosen file's header, or None with ``chosen.problem`` saying why. A file that is not a table
    (or is too big a one) is of no use on the next try either: it is not kept, and a kept one is deleted."""
    if chosen.data is None:
        return None
    try:
        return inspect_header(chosen.data, filename=chosen.name)
    except (UploadRejected, ValidationFailed) as exc:
        chosen.problem = " ".join(exc.problems if isinstance(exc, UploadRejected) else [exc.message])
        if chosen.new:
            chosen.data, chosen.new = None, False
        else:
            _discard(request, chosen)
        return None


def _inspect(request: HttpRequest) -> HttpResponse:
    """Read the chosen (or kept) file's header and offer its columns; the file is kept for the submit."""
    chosen = _chosen_file(request)
    form = DatasetForm(initial=request.POST.dict())
    typed = posted_column_rows(request.POST)
    report = _read_header(request, chosen)
    if report is None:
        show_error(form, "file", chosen.problem)
        formset = column_formset_from_rows(typed)
        return _page(request, {"form": form, "formset": formset, "kept": _keep(request, chosen)}, status=400)
    rows = _offered_rows(typed, report)
    formset = column_formset_from_rows(rows)
    kept = _keep(request, chosen)
    offered = {"report": report, "count": sum(1 for row in rows if row.get("offered")), "name": chosen.name}
    return _page(request, {"form": form, "formset": formset, "kept": kept, "offered": offered})


def _submit(request: HttpRequest) -> HttpResponse:
    """Check the form and the file together and create the draft; on any error, keep the file for the next try."""
    chosen = _chosen_file(request)
    form = DatasetForm(request.POST, request.FILES)
    formset = ColumnFormSet(request.POST, prefix=COLUMNS_PREFIX)
    metadata = validate_dataset_metadata(form, formset)
    if chosen.data is None:
        form.add_error("file", chosen.problem)
    if metadata is None or chosen.data is None:
        return _page(request, {"form": form, "formset": formset, "kept": _keep(request, chosen)}, status=400)
    try:
        dataset = services.dataset_create(
            owner=request.user,
            data=services.DatasetInput(**metadata),
            upload=ContentFile(chosen.data, name=chosen.name),
        )
    except ServiceError as exc:
        attach_upload_error(form, formset, exc)
        if exc.code in services.FILE_PROBLEMS:
            # The file itself is unusable (empty, not a table): keeping it would only fail again.
            _discard(request, chosen)
            form.add_error("file", "Choose another file.")
            kept = None
        else:
            kept = _keep(request, chosen)
        return _page(request, {"form": form, "formset": formset, "kept": kept}, status=exc.status_code)
    _discard(request, chosen)
    messages.success(
        request,
        f"“{dataset.title}” was checked and stored as a draft with {dataset.row_count} rows. "
        "Publish it when you are ready for buyers to see it.",
    )
    return redirect("dataset-detail", dataset_id=dataset.pk)


@login_required
@require_GET
def dataset_new_column(request: HttpRequest) -> HttpResponse:
    """One more blank column row for the new-dataset form (htmx), numbered after the rows it has."""
    _require_owner(request)
    name = f"{COLUMNS_PREFIX}-TOTAL_FORMS"
    try:
        index = int(request.GET.get(name, ""))
    except ValueError:
        index = -1
    if not 0 <= index < MAX_COLUMN_ROWS:
        return HttpResponse(
            f"{name}: give the number of rows the form has now, from 0 to {MAX_COLUMN_ROWS - 1}.",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
    column_form = ColumnForm(prefix=f"{COLUMNS_PREFIX}-{index}")
    column_form.fields["name"].widget.attrs["autofocus"] = True  # keyboard users continue in the new row
    return render(
        request,
        "marketplace/_column_row_added.html",
        {"column_form": column_form, "index": index, "total": index + 1},
    )
