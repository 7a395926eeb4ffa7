"""Forms for the marketplace pages.

The forms only shape the HTML and parse what the browser sends. The rules for a dataset's metadata
and its declared schema live in marketplace/serializers.py, and the pages run those same
serializers (see :func:`validate_dataset_metadata`), so the web and the API can never disagree.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from django import forms
from django.forms.utils import ErrorDict
from django.urls import reverse_lazy

from config import fields as plain_fields
from config.exceptions import ServiceError
from marketplace.models import Column, Dataset
from marketplace.serializers import DatasetMetadataSerializer


def _decimal_filter(label: str, max_digits: int, decimal_places: int, placeholder: str) -> forms.DecimalField:
    """An optional, non-negative decimal filter of the catalogue."""
    return plain_fields.FormDecimalField(
        label=label,
        required=False,
        min_value=Decimal("0"),
        max_digits=max_digits,
        decimal_places=decimal_places,
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal", "placeholder": placeholder}),
    )


class CatalogueFilterForm(forms.Form):
    search = forms.CharField(
        label="Search",
        required=False,
        max_length=200,
        widget=forms.TextInput(attrs={"type": "search", "placeholder": "Title, description or column name"}),
    )
    mode = forms.ChoiceField(
        label="Mode",
        required=False,
        choices=[("", "Any mode"), *Dataset.Mode.choices],
    )
    min_price = _decimal_filter("Price per ε from", 14, 2, "0")
    max_price = _decimal_filter("Price per ε up to", 14, 2, "any")
    min_available = _decimal_filter("ε left for sale, at least", 12, 6, "any")
    order = forms.ChoiceField(
        label="Sort by",
        required=False,
        choices=[("", "Newest first"), ("price", "Lowest price first"), ("-available", "Most ε left first")],
    )

    def clean(self) -> dict:
        cleaned = super().clean()
        low, high = cleaned.get("min_price"), cleaned.get("max_price")
        if low is not None and high is not None and low > high:
            self.add_error("max_price", f"Must be at least the lowest price ({low}).")
        return cleaned


class BuyForm(forms.Form):
    epsilon = plain_fields.FormDecimalField(
        label="Epsilon to buy",
        max_digits=12,
        decimal_places=6,
        min_value=Decimal("0.000001"),
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
        help_text="Your share of this dataset's privacy budget. Every job you run spends some of it.",
    )


class DatasetForm(forms.Form):
    """The dataset's metadata and its file. Field names match DatasetMetadataSerializer's."""

    title = forms.CharField(label="Title", max_length=200)
    description = forms.CharField(label="Description", required=False, widget=forms.Textarea(attrs={"rows": 4}))
    epsilon_cap = plain_fields.FormDecimalField(
        label="Epsilon cap",
        max_digits=12,
        decimal_places=6,
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
        help_text="The total privacy budget sold across all buyers together.",
    )
    delta_cap = plain_fields.FormDecimalField(
        label="Delta cap",
        max_digits=16,
        decimal_places=12,
        initial=Decimal("0"),
        widget=forms.NumberInput(attrs={"step": "any", "inputmode": "decimal"}),
        help_text="Usually 0, or far below one over the number of rows (at most 0.1).",
    )
    price_per_epsilon = plain_fields.FormDecimalField(
        label="Price per epsilon (credits)",
        max_digits=14,
        decimal_places=2,
        widget=forms.NumberInput(attrs={"step": "0.01", "inputmode": "decimal"}),
    )
    row_count_public = forms.BooleanField(label="Show the row count to buyers", required=False)
    clip_to_bounds = forms.BooleanField(
        label="Clip values outside the declared bounds instead of rejecting the file", required=False
    )
    # Not required by the form: after a failed submit the page keeps the file (marketplace/pending_uploads.py),
    # and the view says when there is neither a new file nor a kept one. Choosing a file sends the form to
    # read the file's header (htmx); without JavaScript, "Read the columns from the file" does the same.
    file = forms.FileField(
        label="Data file (CSV or Parquet)",
        required=False,
        widget=forms.FileInput(
            attrs={
                "accept": ".csv,.parquet,.pq,text/csv",
                "hx-post": reverse_lazy("dataset-new"),
                "hx-trigger": "change",
                "hx-vals": '{"inspect": "1"}',
                "hx-target": "#dataset-form",
                "hx-select": "#dataset-form",
                "hx-swap": "outerHTML",
            }
        ),
        help_text="Its header's columns are offered in the schema below. It is checked against the schema "
        "before anything is stored, then encrypted at rest. If the page comes back with an error, the file "
        "is kept: choose one again only to replace it.",
    )


class ColumnForm(forms.Form):
    """One declared column. Field names match ColumnInputSerializer's."""

    name = forms.CharField(label="Name", max_length=100)
    # An initial kind keeps an untouched blank row "unchanged", so the formset skips it.
    kind = forms.ChoiceField(label="Kind", choices=Column.Kind.choices, initial=Column.Kind.NUMERIC)
    lower = plain_fields.FormFloatField(
        label="Lower bound", required=False, widget=forms.NumberInput(attrs={"step": "any"})
    )
    upper = plain_fields.FormFloatField(
        label="Upper bound", required=False, widget=forms.NumberInput(attrs={"step": "any"})
    )
    categories = forms.CharField(
        label="Categories",
        required=False,
        max_length=20000,
        help_text="Categorical columns only: every allowed value, separated by commas.",
    )
    is_label = forms.BooleanField(label="Label column (the target for model training)", required=False)
    leave_out = forms.BooleanField(
        label="Leave this column out (it is not stored, and buyers never see it)", required=False
    )

    def full_clean(self) -> None:
        # A row left out is not declared: it is skipped like an untouched blank row, whatever it holds.
        if self.is_bound and self.fields["leave_out"].widget.value_from_datadict(
            self.data, self.files, self.add_prefix("leave_out")
        ):
            self._errors = ErrorDict()
            self.cleaned_data = {}
            return
        super().full_clean()


class BaseColumnFormSet(forms.BaseFormSet):
    def initial_form_count(self) -> int:
        # Rows drawn again from what was typed, or offered from a file's header, are new rows like the
        # page's own: an untouched one is skipped on submit instead of failing as a required row.
        return super().initial_form_count() if self.is_bound else 0


ColumnFormSet = forms.formset_factory(ColumnForm, formset=BaseColumnFormSet, extra=3, max_num=500, absolute_max=500)
COLUMNS_PREFIX = "columns"
# The column rows a New dataset page may have (the formset's absolute maximum).
MAX_COLUMN_ROWS = 500


def column_formset_from_rows(rows: list[dict[str, Any]]) -> forms.BaseFormSet:
    """An unbound formset drawing exactly ``rows`` (typed rows, offered columns, blank rows: ``{}``)."""
    factory = forms.formset_factory(
        ColumnForm, formset=BaseColumnFormSet, extra=len(rows), max_num=MAX_COLUMN_ROWS, absolute_max=MAX_COLUMN_ROWS
    )
    formset = factory(initial=rows, prefix=COLUMNS_PREFIX)
    formset.column_list_errors = []
    return formset


def show_error(form: forms.Form, field: str | None, message: str) -> None:
    """Show ``message`` beside ``field`` of a form drawn again from what was typed, unbound (so that
    nothing else in it is validated, and no other error appears)."""
    if not form.is_bound and not hasattr(form, "cleaned_data"):
        form.full_clean()
        form.cleaned_data = {}
    form.add_error(field, message)


def posted_column_rows(data: Any) -> list[dict[str, Any]]:
    """The column rows as typed, read straight from POST data, for re-rendering the formset."""
    try:
        total = min(int(data.get(f"{COLUMNS_PREFIX}-TOTAL_FORMS", 0)), 499)
    except (TypeError, ValueError):
        total = 0
    rows = []
    for i in range(max(total, 0)):
        row = {name: data.get(f"{COLUMNS_PREFIX}-{i}-{name}", "") for name in ColumnForm.base_fields}
        row["is_label"] = bool(row["is_label"])
        row["leave_out"] = bool(row["leave_out"])
        rows.append(row)
    return rows


def _split_categories(text: str) -> list[str]:
    # A trailing comma or a doubled one is a typing slip, not a declared blank category.
    return [part.strip() for part in text.split(",") if part.strip()]


def validate_dataset_metadata(form: DatasetForm, formset: forms.BaseFormSet) -> dict | None:
    """Run the API's metadata serializer on the page's form and formset.

    Returns the validated metadata (ready for ``services.DatasetInput``) or None, in which case the
    serializer's errors have been attached to the form fields and column rows they concern, and any
    error about the column list as a whole is in ``formset.column_list_errors``.
    """
    formset.column_list_errors = []
    # Blank rows the user never touched, and rows left out, are skipped; the rest map one to one onto
    # the serializer's list (and, for the upload check's errors, onto the service's column indices).
    formset.filled_forms = []
    if not (form.is_valid() & formset.is_valid()):
        return None

    filled = [f for f in formset.forms if f.cleaned_data]
    formset.filled_forms = filled
    columns = []
    for f in filled:
        row = dict(f.cleaned_data)
        row.pop("leave_out", None)
        categories = _split_categories(row.pop("categories") or "")
        if categories:
            row["categories"] = categories
        columns.append(row)
    payload = {name: value for name, value in form.cleaned_data.items() if name != "file"}
    payload["mode"] = Dataset.Mode.DP
    payload["columns"] = columns

    serializer = DatasetMetadataSerializer(data=payload)
    if serializer.is_valid():
        return dict(serializer.validated_data)

    for name, reasons in serializer.errors.items():
        if name == "columns":
            _attach_column_errors(reasons, filled, formset)
        elif name in form.fields:
            for reason in reasons:
                form.add_error(name, str(reason))
        else:
            for reason in reasons:
                form.add_error(None, str(reason))
    return None


def _attach_column_errors(reasons: Any, filled: list[forms.Form], formset: forms.BaseFormSet) -> None:
    # DRF reports a list's errors either as a list with one entry per item, or as a dict keyed by
    # the item's index (plus "non_field_errors" for the list itself, such as "may not be empty").
    items = reasons.items() if isinstance(reasons, dict) else enumerate(reasons)
    for index, item in items:
        if not isinstance(index, int) or not 0 <= index < len(filled):
            formset.column_list_errors.extend(str(v) for v in (item if isinstance(item, list) else [item]))
        elif isinstance(item, dict):
            for name, values in item.items():
                target = name if name in ColumnForm.base_fields else None
                for value in values:
                    filled[index].add_error(target, str(value))
        elif item:
            formset.column_list_errors.append(str(item))


_COLUMN_FIELD = re.compile(r"metadata\.columns\.(\d+)(?:\.(\w+))?")


def attach_upload_error(form: DatasetForm, formset: forms.BaseFormSet, exc: ServiceError) -> None:
    """Show a service's error where it belongs: a problem of one declared column (``metadata.columns.2.upper``)
    beside that column's field in its row, a problem of the file beside the file field, any other at the
    top of the form. ``formset.filled_forms`` are the rows the service's columns were made from."""
    if not exc.fields:
        form.add_error(None, exc.message)
        return
    rows: list[forms.Form] = getattr(formset, "filled_forms", [])
    attached: set[str] = set()
    beside_columns: set[str] = set()
    for name, reasons in exc.fields.items():
        match = _COLUMN_FIELD.fullmatch(name)
        if match is None or int(match[1]) >= len(rows):
            continue
        part = match[2] if match[2] in ColumnForm.base_fields else None
        for reason in reasons:
            rows[int(match[1])].add_error(part, reason)
        attached.add(name)
        beside_columns.update(reasons)
    for name, reasons in exc.fields.items():
        if name in attached:
            continue
        target = name if name in form.fields else None
        # The file's list repeats the problems shown beside their columns; those are not shown twice.
        for reason in [r for r in reasons if r not in beside_columns] if name == "file" else reasons:
            form.add_error(target, reason)
    if beside_columns and "file" in exc.fields and not form.errors.get("file"):
        form.add_error(
            "file",
            "The file does not match the columns declared below: see the errors beside them. The file is kept; "
            "correct the columns and submit again.",
        )
