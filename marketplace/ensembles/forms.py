"""Forms of the ensemble pages: an owner creates an ensemble from one of their DP datasets, or adds
the dataset to an existing one. They only shape the HTML and parse what the browser sends; the rules
(which datasets may join, the same declared schema) are the services' (marketplace/ensembles/services.py),
whose errors :func:`attach` puts beside the control they name."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms

from config import fields as plain_fields
from config.exceptions import ServiceError
from marketplace.models import Column, Dataset, Ensemble


class EnsembleCreateForm(forms.Form):
    title = forms.CharField(label="Title", max_length=200)
    description = forms.CharField(
        label="Description", required=False, max_length=20000, widget=forms.Textarea(attrs={"rows": 2})
    )
    price_per_label = plain_fields.FormDecimalField(
        label="Price per answered label (credits)",
        min_value=Decimal("0"),
        max_digits=14,
        decimal_places=2,
        initial="0.10",
        widget=forms.NumberInput(attrs={"step": "0.01", "min": "0", "inputmode": "decimal"}),
        help_text="Paid per answered label, shared equally by the member datasets' owners.",
    )
    label = forms.ChoiceField(label="Label column", help_text="Every other column is a feature.")

    def __init__(self, *args: Any, dataset: Dataset, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "ensemble_new_%s")
        super().__init__(*args, **kwargs)
        columns = [
            c for c in dataset.columns.order_by("position") if c.kind in (Column.Kind.CATEGORICAL, Column.Kind.BOOLEAN)
        ]
        self.fields["label"].choices = [(c.name, f"{c.name} ({c.kind})") for c in columns]
        marked = next((c.name for c in columns if c.is_label), None)
        if marked:
            self.fields["label"].initial = marked


class EnsembleJoinForm(forms.Form):
    ensemble = forms.TypedChoiceField(
        label="Ensemble", coerce=int, help_text="Its features and label must be declared exactly as this dataset's."
    )

    def __init__(self, *args: Any, dataset: Dataset, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "ensemble_join_%s")
        super().__init__(*args, **kwargs)
        current = dataset.ensemble_memberships.filter(left_at__isnull=True).values_list("ensemble_id", flat=True)
        others = Ensemble.objects.exclude(pk__in=list(current)).order_by("title", "id")
        self.fields["ensemble"].choices = [(e.pk, f"{e.title} (#{e.pk})") for e in others]


def attach(form: forms.Form, exc: ServiceError, *, default: str | None) -> None:
    """A service's errors beside the control they name; ``dataset`` (this dataset) and anything else
    beside ``default`` (None: on top of the form)."""
    placed = False
    for name, reasons in (exc.fields or {}).items():
        control = name if name in form.fields else default
        for reason in reasons:
            form.add_error(control, str(reason))
            placed = True
    if not placed:
        form.add_error(default, exc.message)
