"""Forms for the account pages. Rules (password strength, unique names, roles) live in services."""

from __future__ import annotations

from django import forms

from accounts.services import VALID_ROLES

ROLE_LABELS = {
    "owner": "Data owner: list datasets and sell their privacy budget",
    "buyer": "Buyer: buy budget and run jobs on datasets",
}
# The roles come from the service, so a new role cannot be offered here without a label.
ROLE_CHOICES = [(role, ROLE_LABELS[role]) for role in VALID_ROLES]


class SignupForm(forms.Form):
    username = forms.RegexField(
        label="Username",
        regex=r"^[\w.@+-]+\Z",
        max_length=150,
        error_messages={"invalid": "Use letters, digits and @/./+/-/_ only."},
        help_text="Other users see it: beside your datasets, and by the owners whose data you buy.",
        widget=forms.TextInput(attrs={"autocomplete": "username", "autocapitalize": "none"}),
    )
    email = forms.EmailField(label="Email", widget=forms.EmailInput(attrs={"autocomplete": "email"}))
    password1 = forms.CharField(
        label="Password",
        strip=False,
        max_length=128,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    password2 = forms.CharField(
        label="Password again",
        strip=False,
        max_length=128,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    roles = forms.MultipleChoiceField(
        label="I want to be a",
        choices=ROLE_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one role."},
    )

    def clean(self) -> dict:
        cleaned = super().clean()
        first, second = cleaned.get("password1"), cleaned.get("password2")
        if first and second and first != second:
            self.add_error("password2", "The two passwords differ.")
        return cleaned


class ApiKeyForm(forms.Form):
    name = forms.CharField(
        label="Key name",
        max_length=100,
        help_text="Something to recognise it by, such as the machine or script that uses it.",
    )
