"""The query form for HE datasets on the dataset page: an aggregate over the encrypted columns.

It offers what HE jobs compute from the browser (counts, sums, means and variances, with an optional
filter); dot products with a weight vector and regression statistics are API calls. What the form
holds becomes the same job body the API takes, and the same services judge it.
"""

from __future__ import annotations

from typing import Any

from django import forms

from compute.forms.common import epsilon_field, spend_from
from config.exceptions import ServiceError
from marketplace.models import Column, Dataset, Purchase

AGGREGATES = [
    ("count", "count (per category)"),
    ("sum", "sum"),
    ("mean", "mean"),
    ("variance", "variance"),
]
# Aggregates that multiply ciphertexts, so they need a dataset encrypted for products.
MULTIPLYING = ("variance",)


class HeQueryForm(forms.Form):
    purchase = forms.TypedChoiceField(label="Purchase", coerce=int)
    aggregate = forms.ChoiceField(label="Aggregate", choices=AGGREGATES, initial="count")
    column = forms.ChoiceField(label="Column")
    filter = forms.ChoiceField(
        label="Only rows where",
        required=False,
        help_text="An encrypted category or yes/no column; multiplying by it needs a dataset encrypted for products.",
    )
    epsilon = epsilon_field()
    form_token = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, dataset: Dataset, purchases: list[Purchase], **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "he_query_%s")
        super().__init__(*args, **kwargs)
        self.dataset = dataset
        self.products = "product" in (dataset.bundle_manifest or {}).get("job_classes", [])
        spend_from(self, purchases)
        if not self.products:
            self.fields["aggregate"].choices = [c for c in AGGREGATES if c[0] not in MULTIPLYING]
        columns = list(Column.objects.filter(dataset=dataset).order_by("position"))
        choices: list[tuple[str, str]] = []
        sources: list[str] = []
        for c in columns:
            if c.kind == "numeric" and c.category is None and c.source == c.name:
                choices.append((c.name, f"{c.name} (numeric, {c.lower:g} to {c.upper:g})"))
            elif c.kind == "boolean":
                choices.append((c.name, f"{c.name} (yes/no)"))
            elif c.category is not None and c.source not in sources:
                sources.append(c.source)
                categories = [x.category for x in columns if x.source == c.source and x.category is not None]
                choices.append((c.source, f"{c.source} (categories: {', '.join(categories)})"))
        self.fields["column"].choices = choices
        indicators = [(c.name, f"{c.source} is {c.category}") for c in columns if c.category is not None]
        indicators += [(c.name, f"{c.name} is yes") for c in columns if c.kind == "boolean"]
        self.fields["filter"].choices = [("", "All rows"), *indicators]
        if not self.products:
            self.fields["filter"].widget = forms.HiddenInput()

    def job_body(self) -> dict[str, Any]:
        c = self.cleaned_data
        query: dict[str, Any] = {"aggregate": c["aggregate"], "column": c["column"]}
        if c.get("filter"):
            query["filter"] = {"column": c["filter"]}
        return query

    def attach(self, exc: ServiceError) -> None:
        """Put a service's errors beside the control they name; the rest on top of the form."""
        for path, reasons in (exc.fields or {}).items():
            head, _, rest = path.partition(".")
            name = head if head in ("epsilon", "purchase") else None
            if head == "query":
                name = {"column": "column", "aggregate": "aggregate", "category": "column"}.get(rest.split(".")[0])
                name = name or ("filter" if rest.startswith("filter") else None)
            for reason in reasons:
                self.add_error(name, str(reason))
        if not exc.fields:
            self.add_error("epsilon" if exc.code == "insufficient_budget" else None, exc.message)
