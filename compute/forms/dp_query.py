"""Forms for the query pages.

The forms only shape the HTML and turn what the browser sends into the same job body the API
takes (``{aggregate, column, quantiles, bins, filters, group_by}``). They accept any value for the
query's parts and leave the rules to the engine (``compute.kinds.dp_query.dp_query_prepare``), so the page
and the API can never disagree; the engine's errors come back with a dotted field path
("query.filters.0.value") that :func:`attach_errors` puts beside the control it names.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django import forms

from compute.engines import dp
from compute.forms.common import (
    NUMBER,
    CurrentValues,
    OpenChoiceField,
    OpenMultipleChoiceField,
    delta_field,
    epsilon_field,
    keep_choice,
    spend_from,
)
from config import fields as plain_fields
from config.exceptions import ServiceError
from marketplace.models import Purchase

AGGREGATE_CHOICES = [
    ("count", "count (rows)"),
    ("sum", "sum"),
    ("mean", "mean"),
    ("variance", "variance"),
    ("std", "standard deviation"),
    ("quantile", "quantiles"),
    ("histogram", "histogram"),
]
OP_CHOICES = {
    "numeric": [("range", "between")],
    "categorical": [("eq", "is"), ("in", "is one of")],
    "boolean": [("eq", "is"), ("in", "is one of")],
}
BOOLEAN_CHOICES = [("true", "true"), ("false", "false")]
MAX_FILTERS = 10
FILTERS_PREFIX = "filters"


class QueryForm(CurrentValues, forms.Form):
    """The query and its budget. Which controls appear depends on the aggregate and the columns'
    declared kinds; see ``visible`` and the column choices set in ``__init__``."""

    purchase = forms.TypedChoiceField(label="Purchase", coerce=int)
    aggregate = OpenChoiceField(label="Aggregate", choices=AGGREGATE_CHOICES, initial="count")
    column = OpenChoiceField(label="Column", required=False)
    quantiles = forms.CharField(
        label="Quantiles",
        required=False,
        initial="0.5",
        max_length=400,
        help_text="Numbers between 0 and 1, separated by commas, e.g. 0.25, 0.5, 0.75.",
    )
    bins = plain_fields.FormIntegerField(
        label="Bins",
        required=False,
        initial=10,
        min_value=1,
        max_value=dp.MAX_BINS,
        widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
        help_text="Equal-width bins over the column's declared bounds.",
    )
    group_by = OpenMultipleChoiceField(label="Group by", required=False, widget=forms.CheckboxSelectMultiple)
    epsilon = epsilon_field()
    delta = delta_field("0 uses Laplace or geometric noise; a small delta uses Gaussian noise.")
    rows = plain_fields.FormIntegerField(
        label="Rows the answer covers (optional guess)",
        required=False,
        min_value=1,
        widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
        help_text="Means, variances and quantiles need it to bound their error. Left empty, the estimate uses the "
        "public row count (an even share of it per group) when there is one; filtered rows are private, so guess "
        "them here. Only the estimate uses it.",
    )
    filter_count = plain_fields.FormIntegerField(widget=forms.HiddenInput, required=False, initial=1)
    form_token = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, schema: dict[str, dp.ColumnMeta], purchases: list[Purchase], **kwargs: Any) -> None:
        # The dataset page also has the buy form, whose "epsilon" must not share this one's id.
        kwargs.setdefault("auto_id", "query_%s")
        super().__init__(*args, **kwargs)
        self.schema = schema
        self.purchases = purchases
        spend_from(self, purchases)

        aggregate = self.aggregate_value
        column = self.fields["column"]
        # Every declared column validates (the engine judges the kind); only fitting ones are offered.
        column.choices = [(name, name) for name in schema]
        if aggregate in dp.NUMERIC_AGGREGATES:
            fitting = [name for name, meta in schema.items() if meta.kind == "numeric"]
        else:
            fitting = list(schema)
        column.widget.choices = [
            ("", "Choose a column"),
            *[(name, f"{name} ({schema[name].kind})") for name in fitting],
        ]
        keep_choice(column, [str(self._value("column"))])

        group_by = self.fields["group_by"]
        group_by.choices = [(n, n) for n, m in schema.items() if m.kind in ("categorical", "boolean")]
        keep_choice(group_by, self._values("group_by"))

    @property
    def aggregate_value(self) -> str:
        return str(self._value("aggregate") or "count")

    @property
    def column_meta(self) -> dp.ColumnMeta | None:
        return self.schema.get(str(self._value("column")))

    @property
    def visible(self) -> dict[str, bool]:
        """Which optional controls the current aggregate uses."""
        aggregate = self.aggregate_value
        meta = self.column_meta
        return {
            "column": aggregate != "count",
            "quantiles": aggregate == "quantile",
            "bins": aggregate == "histogram" and (meta is None or meta.kind == "numeric"),
            "group_by": bool(self.fields["group_by"].choices),
        }

    @property
    def filter_total(self) -> int:
        try:
            total = int(self._value("filter_count") or 1)
        except (TypeError, ValueError):
            total = 1
        return min(max(total, 1), MAX_FILTERS)


class FilterForm(CurrentValues, forms.Form):
    """One filter row. The controls shown depend on the chosen column's declared kind."""

    column = OpenChoiceField(label="Filter on", required=False)
    op = OpenChoiceField(label="Condition", required=False)
    value = OpenChoiceField(label="Value", required=False)
    values = OpenMultipleChoiceField(label="Values", required=False, widget=forms.CheckboxSelectMultiple)
    low = plain_fields.FormFloatField(label="From", required=False, widget=forms.NumberInput(attrs=NUMBER))
    high = plain_fields.FormFloatField(label="To", required=False, widget=forms.NumberInput(attrs=NUMBER))

    def __init__(self, *args: Any, schema: dict[str, dp.ColumnMeta], index: int, **kwargs: Any) -> None:
        super().__init__(*args, prefix=f"{FILTERS_PREFIX}-{index}", **kwargs)
        self.schema = schema
        self.index = index
        self.fields["column"].choices = [("", "No filter"), *[(n, f"{n} ({m.kind})") for n, m in schema.items()]]
        keep_choice(self.fields["column"], [str(self._value("column"))])
        meta = self.meta
        kind = meta.kind if meta else "categorical"
        self.fields["op"].choices = OP_CHOICES[kind]
        keep_choice(self.fields["op"], [str(self._value("op"))])
        keys = BOOLEAN_CHOICES if kind == "boolean" else [(c, c) for c in (meta.categories if meta else ())]
        self.fields["value"].choices = [("", "Choose a value"), *keys]
        keep_choice(self.fields["value"], [str(self._value("value"))])
        self.fields["values"].choices = keys
        keep_choice(self.fields["values"], self._values("values"))
        for name in ("low", "high") if meta and meta.kind == "numeric" else ():
            bound = meta.lower if name == "low" else meta.upper
            self.fields[name].widget.attrs["placeholder"] = f"{bound:g}"
        self.fields["low"].help_text = self.fields["high"].help_text = ""

    @property
    def meta(self) -> dp.ColumnMeta | None:
        return self.schema.get(str(self._value("column")))

    @property
    def op_value(self) -> str:
        meta = self.meta
        op = str(self._value("op") or "")
        if not op and meta is not None:
            op = "range" if meta.kind == "numeric" else "eq"
        return op

    @property
    def is_blank(self) -> bool:
        return not self._value("column")


def filter_forms(
    data: Any, *, schema: dict[str, dp.ColumnMeta], total: int, initial: bool = False, auto_id: str = "id_%s"
) -> list[FilterForm]:
    """The filter rows; ``initial`` renders posted values without validating them (no errors). A second
    query form on the page (the one for fake data) gives its rows another ``auto_id``."""
    if data is None:
        return [FilterForm(schema=schema, index=i, auto_id=auto_id) for i in range(total)]
    if initial:
        return [
            FilterForm(initial=_row_initial(data, i), schema=schema, index=i, auto_id=auto_id) for i in range(total)
        ]
    return [FilterForm(data, schema=schema, index=i, auto_id=auto_id) for i in range(total)]


def _row_initial(data: Any, index: int) -> dict[str, Any]:
    prefix = f"{FILTERS_PREFIX}-{index}-"
    row: dict[str, Any] = {name: data.get(prefix + name, "") for name in ("column", "op", "value", "low", "high")}
    row["values"] = data.getlist(prefix + "values") if hasattr(data, "getlist") else []
    return row


def with_defaults(data: Any) -> Any:
    """Posted data with the default of each control the form did not show before (the bins of a
    histogram just chosen, say), so the redrawn form and its estimate start from the same values."""
    data = data.copy()
    for name in ("quantiles", "bins", "epsilon", "delta"):
        if name not in data:
            data[name] = str(QueryForm.base_fields[name].initial)
    return data


def query_initial(data: Any) -> dict[str, Any]:
    """Posted values as a form's initial data: the form shows them without judging them."""
    out: dict[str, Any] = {name: data.get(name, "") for name in QueryForm.base_fields if name != "group_by"}
    out["group_by"] = data.getlist("group_by") if hasattr(data, "getlist") else []
    return out


def _to_key(meta: dp.ColumnMeta | None, value: str) -> Any:
    # Boolean filters take JSON booleans; anything else goes to the engine as typed.
    if meta is not None and meta.kind == "boolean" and value in ("true", "false"):
        return value == "true"
    return value


def build_job_body(form: QueryForm, rows: list[FilterForm]) -> tuple[dict[str, Any], list[int]] | None:
    """The API's job body from valid forms, or None after attaching the forms' own errors.

    Returns the query and, for each filter sent, the index of the row it came from, so that the
    engine's "query.filters.N" errors land on the right row.
    """
    valid = form.is_valid()
    valid = all([row.is_valid() for row in rows]) and valid
    if not valid:
        return None
    data = form.cleaned_data
    aggregate = data["aggregate"]
    query: dict[str, Any] = {"aggregate": aggregate, "filters": [], "group_by": list(data["group_by"])}
    visible = form.visible
    if visible["column"]:
        query["column"] = data["column"] or None
    if visible["quantiles"]:
        try:
            query["quantiles"] = [float(part) for part in data["quantiles"].split(",") if part.strip()]
        except ValueError:
            form.add_error("quantiles", "Give numbers between 0 and 1, separated by commas.")
            return None
    if visible["bins"] and data["bins"] is not None:
        query["bins"] = data["bins"]
    sent_from: list[int] = []
    for row in rows:
        if not row.cleaned_data["column"]:
            continue
        f = _filter_body(row)
        if f is None:
            return None
        query["filters"].append(f)
        sent_from.append(row.index)
    return query, sent_from


def _filter_body(row: FilterForm) -> dict[str, Any] | None:
    """One filter of the job body from a valid filter row, or None after attaching its error."""
    c = row.cleaned_data
    meta = row.meta
    op = row.op_value
    f: dict[str, Any] = {"column": c["column"], "op": op}
    if op == "range":
        f["low"], f["high"] = c["low"], c["high"]
    elif op == "in":
        f["values"] = [_to_key(meta, v) for v in c["values"]]
    else:
        f["value"] = _to_key(meta, c["value"]) if c["value"] != "" else None
        if f["value"] is None:
            row.add_error("value", "Choose a value.")
            return None
    return f


def idempotency_key(form: QueryForm, query: dict[str, Any]) -> str | None:
    """One key per rendered form and query: a double-clicked submit makes one job, while a form
    reused (browser back) for a different query makes a new one. No form token, no key."""
    if not form.cleaned_data.get("form_token"):
        return None
    body = json.dumps(
        {
            "q": query,
            "e": form.cleaned_data["epsilon"],
            "d": form.cleaned_data["delta"],
            "p": form.cleaned_data["purchase"],
        },
        sort_keys=True,
    )
    digest = hashlib.sha256(body.encode()).hexdigest()[:24]
    return f"web-{form.cleaned_data['form_token'][:40]}-{digest}"


# The engine names the field it rejects by its path in the job body; these are the controls.
_QUERY_FIELD = {"aggregate": "aggregate", "column": "column", "quantiles": "quantiles", "bins": "bins"}
_FILTER_FIELD = {"column": "column", "op": "op", "value": "value", "values": "values", "low": "low", "high": "high"}


def attach_errors(form: QueryForm, rows: list[FilterForm], sent_from: list[int], exc: ServiceError) -> None:
    """Put a service's errors beside the controls they name; what cannot be placed goes on top."""
    fields = exc.fields or {}
    if not fields:
        target = "epsilon" if exc.code == "insufficient_budget" else None
        form.add_error(target, exc.message)
        return
    for path, reasons in fields.items():
        parts = path.split(".")
        for reason in reasons:
            _attach_one(form, rows, sent_from, parts, str(reason))


def _attach_one(form: QueryForm, rows: list[FilterForm], sent_from: list[int], parts: list[str], reason: str) -> None:
    head = parts[0]
    if head in ("epsilon", "delta", "purchase", "rows"):
        form.add_error(head, reason)
        return
    if head != "query" or len(parts) < 2:
        form.add_error(None, reason)
        return
    name = parts[1]
    if name in _QUERY_FIELD:
        if name == "quantiles" and len(parts) > 2 and parts[2].isdigit():
            reason = f"Quantile {int(parts[2]) + 1}: {reason}"
        form.add_error(_QUERY_FIELD[name], reason)
    elif name == "group_by":
        form.add_error("group_by", reason)
    elif name == "filters" and len(parts) > 2 and parts[2].isdigit() and int(parts[2]) < len(sent_from):
        row = rows[sent_from[int(parts[2])]]
        field_name = _FILTER_FIELD.get(parts[3]) if len(parts) > 3 else None
        if field_name == "value" and row.op_value == "in":
            field_name = "values"
        row.add_error(field_name or "column", reason)
    else:
        form.add_error(None, reason)
