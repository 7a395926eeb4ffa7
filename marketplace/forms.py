"""Forms for the marketplace pages.

The forms only shape the HTML and parse what the browser sends. The rules for a dataset's metadata
and its declared schema live in marketplace/serializers.py, and the pages run those same
serializers (see :func:`validate_dataset_metadata`), so the web and the API can never disagree.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms

from config import fields as plain_fields
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
    file = forms.FileField(
        label="Data file (CSV or Parquet)",
        widget=forms.ClearableFileInput(attrs={"accept": ".csv,.parquet,.pq,text/csv"}),
        help_text="Checked against the schema below before anything is stored, then encrypted at rest. "
        "If the page comes back with an error, choose the file again.",
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


ColumnFormSet = forms.formset_factory(ColumnForm, extra=3, max_num=500, absolute_max=500)
# Used when re-rendering with one more row: the rows the user typed come back as initial data.
ColumnFormSetNoExtra = forms.formset_factory(ColumnForm, extra=0, max_num=500, absolute_max=500)
COLUMNS_PREFIX = "columns"


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
    if not (form.is_valid() & formset.is_valid()):
        return None

    # Blank rows the user never touched are skipped; the rest map one to one onto the serializer's list.
    filled = [f for f in formset.forms if f.cleaned_data]
    columns = []
    for f in filled:
        row = dict(f.cleaned_data)
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
