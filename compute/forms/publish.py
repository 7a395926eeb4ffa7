"""The form that publishes a released model for encrypted inference, on its job's page. It shapes the
HTML only: the API's input serializer (compute/api/listings.py) checks what it holds and the API's
service publishes it, so the page and ``POST /api/v1/models/`` cannot disagree."""

from __future__ import annotations

from typing import Any

from django import forms

from compute.forms.common import NUMBER


class PublishForm(forms.Form):
    title = forms.CharField(label="Title", max_length=200, help_text="What the model catalogue shows.")
    price_per_prediction = forms.CharField(
        label="Price per prediction (credits)",
        max_length=40,
        initial="0.01",
        widget=forms.NumberInput(attrs={**NUMBER, "min": "0"}),
        help_text="Credits per row scored, at most two decimals; you are paid when the scores are ready.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", "publish_%s")
        super().__init__(*args, **kwargs)

    def attach(self, errors: dict[str, Any]) -> None:
        """Put the serializer's or the service's errors beside the control they name (unless the form's own
        check, such as a required field left empty, said it already); the rest on top."""
        for name, reasons in errors.items():
            if name in self.errors:
                continue
            for reason in reasons if isinstance(reasons, list) else [reasons]:
                self.add_error(name if name in self.fields else None, str(reason))
