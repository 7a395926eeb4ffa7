"""The PATE job form of an ensemble's page: the buyer's unlabelled table and the spec's controls.

Like the other job forms it only shapes the HTML and turns what the browser sends into the body the API
takes (the ``spec`` object, empty controls left out so that the engine's defaults apply); the rules (a
field's range, the threshold at most the teachers, the fit to a target epsilon) are the engine's
(``compute.engines.pate.parse_spec``), whose errors name the field ("spec.teachers") that
:meth:`PateForm.attach` puts beside its control.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import Any

from django import forms

from compute.engines.pate import TEACHER_MODELS
from compute.engines.pate.spec import DEFAULT_MAX_QUERIES, DEFAULT_SIGMA1, DEFAULT_SIGMA2, DEFAULT_TEACHERS
from compute.forms.common import NUMBER
from config import fields as plain_fields
from config.exceptions import ServiceError

MODEL_NAMES = {"logistic_regression": "logistic regression", "random_forest": "random forest"}
SPEC_FIELDS = ("teachers", "threshold", "sigma1", "sigma2", "max_queries", "teacher_model", "epsilon")
WHOLE = {"inputmode": "numeric"}


def _number(label: str, whole: bool, default: str, help_text: str) -> forms.Field:
    """An optional number whose default (the engine's) shows as its placeholder: left empty, it is left
    out of the spec, so a target epsilon scales the default sigmas as the API does."""
    attrs = {**(WHOLE if whole else NUMBER), "placeholder": default}
    widget = forms.NumberInput(attrs=attrs)
    if whole:
        return plain_fields.FormIntegerField(label=label, required=False, widget=widget, help_text=help_text)
    return plain_fields.FormFloatField(label=label, required=False, widget=widget, help_text=help_text)


class PateForm(forms.Form):
    file = forms.FileField(
        label="Unlabelled rows (CSV with a header row, or Parquet)",
        required=False,
        help_text="Needs the ensemble's feature columns, within their declared bounds and categories; other "
        "columns are ignored. Stored encrypted and deleted once the job is done.",
    )
    teachers = _number(
        "Teachers", True, str(DEFAULT_TEACHERS), f"Empty: {DEFAULT_TEACHERS}. 1 to 2,000, spread over the members."
    )
    threshold = _number(
        "Threshold (T_c)",
        False,
        "0.8 × teachers",
        "Votes the top label needs (noised by sigma 1) for a row to be answered. Empty: 0.8 of the teachers.",
    )
    sigma1 = _number(
        "Sigma 1 (threshold noise)", False, f"{DEFAULT_SIGMA1:g}", f"Empty: {DEFAULT_SIGMA1:g}. At least 1."
    )
    sigma2 = _number("Sigma 2 (vote noise)", False, f"{DEFAULT_SIGMA2:g}", f"Empty: {DEFAULT_SIGMA2:g}. At least 1.")
    max_queries = _number(
        "Most rows asked (max_queries)",
        True,
        f"every row, up to {DEFAULT_MAX_QUERIES:,}",
        f"Empty: every row of your table, up to {DEFAULT_MAX_QUERIES:,}; at most the table's rows.",
    )
    teacher_model = forms.ChoiceField(
        label="Teacher model",
        required=False,
        choices=[(m, MODEL_NAMES.get(m, m)) for m in TEACHER_MODELS],
        initial=TEACHER_MODELS[0],
    )
    epsilon = _number(
        "Target epsilon (optional)",
        False,
        "none",
        "The sigmas are scaled so that the reservation is at most this ε at the members' δ (with both sigmas "
        "given, the rows asked are lowered instead).",
    )
    form_token = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "pate_%s")
        super().__init__(*args, **kwargs)
        if not self.is_bound:
            self.initial.setdefault("form_token", secrets.token_urlsafe(12))

    def spec_body(self) -> dict[str, Any]:
        """The API's ``spec`` from a valid form; empty controls are left out (the engine's default)."""
        c = self.cleaned_data
        return {name: c[name] for name in SPEC_FIELDS if c.get(name) not in (None, "")}

    def idempotency_key(self) -> str | None:
        """One key per rendered form and spec: a double-clicked submit makes one job."""
        token = self.cleaned_data.get("form_token")
        if not token:
            return None
        upload = self.files.get("file")
        table = [getattr(upload, "name", ""), getattr(upload, "size", 0)] if upload is not None else None
        body = json.dumps({"spec": self.spec_body(), "file": table}, sort_keys=True)
        return f"web-pate-{token[:40]}-{hashlib.sha256(body.encode()).hexdigest()[:24]}"

    def attach(self, exc: ServiceError) -> None:
        """A service's errors beside the controls they name ("spec.sigma1" beside sigma 1, "file" under
        the file control); a refusal of the whole job (a member's budget, the credits) on top of the form."""
        placed = False
        for path, reasons in (exc.fields or {}).items():
            name = path.removeprefix("spec.")
            control = name if name in SPEC_FIELDS or name == "file" else None
            for reason in reasons:
                self.add_error(control, str(reason))
                placed = True
        if not placed:
            self.add_error(None, refusal_text(exc))


def refusal_text(exc: ServiceError) -> str:
    """A 409 in words: a member dataset's budget (the message names it) or the buyer's credits."""
    if exc.code == "insufficient_credits":
        return (
            "Your wallet cannot hold the credits this job may cost (the price per label × the rows asked): "
            f"{exc.message} Ask fewer rows (max_queries), or add credits."
        )
    return exc.message
