"""Form pieces every query form shares: choice fields that keep an unknown posted value visible, the
epsilon control, and the purchase to spend from."""

from __future__ import annotations

import secrets
from typing import Any

from django import forms

from compute.budget import purchase_position
from marketplace.models import Purchase

NUMBER = {"step": "any", "inputmode": "decimal"}


class OpenChoiceField(forms.ChoiceField):
    """A select whose value is checked by the engine, not by the form, so the engine's message
    ("'west' is not a declared category of 'region'") is the one the buyer reads."""

    def valid_value(self, value: Any) -> bool:
        return True


class OpenMultipleChoiceField(forms.MultipleChoiceField):
    def valid_value(self, value: Any) -> bool:
        return True


def keep_choice(field: forms.ChoiceField, values: list[str]) -> None:
    """Offer a typed value the form would not list (an undeclared category, a column of the wrong
    kind), so that a re-rendered form keeps what was sent and the error beside it makes sense."""
    offered = {str(v) for v, _ in field.widget.choices}
    extra = [(v, f"{v} (not allowed here)") for v in values if v and v not in offered]
    if extra:
        field.widget.choices = [*field.widget.choices, *extra]


class CurrentValues:
    """The value a field holds now: what was posted when bound, else its initial value."""

    def _value(self, name: str) -> Any:
        if self.is_bound:  # type: ignore[attr-defined]
            return self.data.get(self.add_prefix(name), "")  # type: ignore[attr-defined]
        return self.initial.get(name, "")  # type: ignore[attr-defined]

    def _values(self, name: str) -> list[str]:
        if self.is_bound:  # type: ignore[attr-defined]
            data = self.data  # type: ignore[attr-defined]
            key = self.add_prefix(name)  # type: ignore[attr-defined]
            return [str(v) for v in (data.getlist(key) if hasattr(data, "getlist") else data.get(key) or [])]
        return [str(v) for v in self.initial.get(name) or []]  # type: ignore[attr-defined]


def epsilon_field() -> forms.CharField:
    """The epsilon a query spends, as typed (the services turn it into an exact Decimal)."""
    return forms.CharField(
        label="Epsilon (ε) to spend",
        initial="0.1",
        max_length=40,
        widget=forms.NumberInput(attrs={**NUMBER, "min": "0"}),
        help_text="More epsilon, less noise, higher price.",
    )


def delta_field(help_text: str) -> forms.CharField:
    """The delta a job spends, as typed: 0 (the default) for pure epsilon-DP noise."""
    return forms.CharField(
        label="Delta (δ)",
        required=False,
        initial="0",
        max_length=40,
        widget=forms.NumberInput(attrs={**NUMBER, "min": "0"}),
        help_text=help_text,
    )


def spend_from(form: forms.Form, purchases: list[Purchase]) -> None:
    """Offer the buyer's purchases of the dataset in ``form``'s purchase control (hidden when there is
    one), and give an unbound form a fresh token, so that a double submission makes one job."""
    form.fields["purchase"].choices = [(p.pk, purchase_label(p)) for p in purchases]
    if len(purchases) == 1:
        form.fields["purchase"].widget = forms.HiddenInput()
        form.fields["purchase"].initial = purchases[0].pk
    if not form.is_bound and not form.initial.get("form_token"):
        form.initial["form_token"] = secrets.token_urlsafe(12)


def purchase_label(purchase: Purchase) -> str:
    left = purchase_position(purchase).epsilon_left
    return (
        f"Purchase {purchase.pk}: ε {left.normalize():f} left of {purchase.epsilon.normalize():f}"
        f" (bought {purchase.created_at:%Y-%m-%d})"
    )
