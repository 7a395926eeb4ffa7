"""The training form of a DP dataset's page: a model type, its features and label from the declared
schema, the hyper-parameters the type takes, and the budget.

Like the query form, it only shapes the HTML and turns what the browser sends into the body the API
takes (``{type, features, label, params}``); the rules (which label a type needs, a parameter's range,
the bounds a feature must declare) are the engine's (``compute.engines.models.parse_model``), whose
errors name the field ("model.params.C") that :meth:`TrainForm.attach` puts beside its control.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django import forms

from compute.engines.models import spec as model_spec
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

TYPE_CHOICES = [
    ("logistic_regression", "logistic regression (classes)"),
    ("linear_regression", "linear regression (a number)"),
    ("naive_bayes", "Gaussian naive Bayes (classes)"),
    ("random_forest", "random forest (classes)"),
    ("kmeans", "k-means (clusters, no label)"),
    ("pca", "PCA (components, no label)"),
]
# The hyper-parameters as controls: the label, whole or not, the help. Ranges and defaults are the
# engine's (compute/engines/models/spec.py PARAMS); the form shows its defaults as initial values.
PARAM_HELP = {
    "C": (
        "C (inverse regularisation)",
        False,
        "Greater than 0; scikit-learn's C. Empty: chosen from a noisy row count.",
    ),
    "alpha": ("Ridge alpha", False, "At least 0. Empty: chosen from the noise alone."),
    "var_floor": ("Smallest variance", False, "At least 0, in the scaled units."),
    "k": ("Clusters (k)", True, "Required: 2 to 20."),
    "iterations": ("Rounds", True, "1 to 10; the budget is split between them."),
    "seed": ("Seed", True, "Draws the public initial centres or trees."),
    "n_components": ("Components", True, "Empty: one per encoded column."),
    "n_trees": ("Trees", True, "1 to 50; the budget is split between them."),
    "max_depth": ("Depth", True, "1 to 8."),
}
# What the form starts with where the engine has no default (k is required there).
FORM_DEFAULTS = {"k": 3}
PARAM_NAMES = tuple(PARAM_HELP)


def _param_field(name: str) -> forms.Field:
    label, whole, help_text = PARAM_HELP[name]
    rules = [types[name] for types in model_spec.PARAMS.values() if name in types]
    default = rules[0].default if rules[0].default is not None else FORM_DEFAULTS.get(name)
    if whole:
        initial = None if default is None else int(default)
        widget = forms.NumberInput(attrs={"inputmode": "numeric"})
        return plain_fields.FormIntegerField(
            label=label, required=False, initial=initial, widget=widget, help_text=help_text
        )
    return plain_fields.FormFloatField(
        label=label, required=False, initial=default, widget=forms.NumberInput(attrs=NUMBER), help_text=help_text
    )


class TrainForm(CurrentValues, forms.Form):
    """A model to train and its budget. The label shows for the types that take one; each type's own
    hyper-parameters show (``visible_params``)."""

    purchase = forms.TypedChoiceField(label="Purchase", coerce=int)
    model_type = OpenChoiceField(label="Model type", choices=TYPE_CHOICES, initial="logistic_regression")
    features = OpenMultipleChoiceField(label="Features", required=False, widget=forms.CheckboxSelectMultiple)
    label = OpenChoiceField(label="Label (the target)", required=False)
    epsilon = epsilon_field()
    delta = delta_field("0 uses discrete Laplace noise; a small delta uses discrete Gaussian noise.")
    form_token = forms.CharField(widget=forms.HiddenInput, required=False)

    def __init__(
        self,
        *args: Any,
        schema: dict[str, Any],
        purchases: list[Purchase],
        delta_allowed: bool = True,
        **kwargs: Any,
    ) -> None:
        # The dataset page also has the buy form and the query form, whose ids must differ.
        kwargs.setdefault("auto_id", "train_%s")
        super().__init__(*args, **kwargs)
        for name in PARAM_NAMES:
            self.fields[name] = _param_field(name)
        self.schema = schema
        self.purchases = purchases
        spend_from(self, purchases)
        self.fields["epsilon"].initial = "1"
        self.fields["epsilon"].help_text = "More epsilon, less noise on the model's statistics, higher price."
        if not delta_allowed:
            self.fields["delta"].widget = forms.HiddenInput()
        keep_choice(self.fields["model_type"], [str(self._value("model_type"))])

        features = self.fields["features"]
        features.choices = [(name, f"{name} ({meta.kind})") for name, meta in schema.items()]
        keep_choice(features, self._values("features"))

        label = self.fields["label"]
        label.choices = [(name, name) for name in schema]
        kind = self.type_value
        fitting = [name for name, meta in schema.items() if (meta.kind == "numeric") == (kind == "linear_regression")]
        label.widget.choices = [("", "Choose a column"), *[(n, f"{n} ({schema[n].kind})") for n in fitting]]
        keep_choice(label, [str(self._value("label"))])

    @property
    def type_value(self) -> str:
        return str(self._value("model_type") or "logistic_regression")

    @property
    def takes_label(self) -> bool:
        return self.type_value not in model_spec.UNSUPERVISED

    @property
    def visible_params(self) -> list[str]:
        return [name for name in PARAM_NAMES if name in model_spec.PARAMS.get(self.type_value, {})]

    def param_fields(self) -> list[forms.BoundField]:
        return [self[name] for name in self.visible_params]

    def job_body(self) -> dict[str, Any]:
        """The API's ``model`` from a valid form: the type's own parameters, those left empty left out
        (the engine's default applies)."""
        c = self.cleaned_data
        params = {name: c[name] for name in self.visible_params if c.get(name) is not None}
        return {
            "type": c["model_type"],
            "features": list(c["features"]),
            "label": (c["label"] or None) if self.takes_label else None,
            "params": params,
        }

    def idempotency_key(self) -> str | None:
        """One key per rendered form and request: a double-clicked submit makes one job."""
        c = self.cleaned_data
        if not c.get("form_token"):
            return None
        body = json.dumps(
            {"m": self.job_body(), "e": c["epsilon"], "d": c["delta"], "p": c["purchase"]}, sort_keys=True
        )
        return f"web-train-{c['form_token'][:40]}-{hashlib.sha256(body.encode()).hexdigest()[:24]}"

    def attach(self, exc: ServiceError) -> None:
        """Put a service's errors beside the controls they name ("model.params.C" beside C); what names
        no control goes on top of the form, and a budget the purchase cannot pay beside epsilon."""
        for path, reasons in (exc.fields or {}).items():
            for reason in reasons:
                self.add_error(self._control(path), str(reason))
        if not exc.fields:
            self.add_error("epsilon" if exc.code == "insufficient_budget" else None, exc.message)

    def _control(self, path: str) -> str | None:
        parts = path.split(".")
        if parts[0] in ("epsilon", "delta", "purchase"):
            return parts[0]
        if parts[0] != "model" or len(parts) < 2:
            return None
        name = parts[1]
        if name == "type":
            return "model_type"
        if name in ("features", "label"):
            return name if name == "features" or self.takes_label else None
        if name == "params" and len(parts) > 2 and parts[2] in self.visible_params:
            return parts[2]
        return None


def train_initial(data: Any) -> dict[str, Any]:
    """Posted values as a form's initial data: the form shows them without judging them."""
    out: dict[str, Any] = {name: data.get(name, "") for name in TrainForm.base_fields if name != "features"}
    out.update({name: data.get(name, "") for name in PARAM_NAMES})
    out["features"] = data.getlist("features") if hasattr(data, "getlist") else list(data.get("features") or [])
    return out


def with_param_defaults(data: Any) -> Any:
    """Posted data with the initial value of each parameter the form did not show before (another
    type's), so that the redrawn form and its estimate start from the same values."""
    data = data.copy()
    for name in PARAM_NAMES:
        if name not in data:
            initial = _param_field(name).initial
            data[name] = "" if initial is None else str(initial)
    for name in ("epsilon", "delta"):
        if name not in data:
            data[name] = "1" if name == "epsilon" else "0"
    return data
