"""Account pages: sign-up, password change, API keys, wallet. Login and logout are Django's own views."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import selectors, services
from accounts.forms import ApiKeyForm, SignupForm
from config.exceptions import NotFound, ServiceError

LEDGER_PAGE_SIZE = 25

# The service names the password "password"; the page asks for it twice as password1/password2.
_SIGNUP_FIELD_FOR = {"password": "password1"}


class PasswordChangeView(auth_views.PasswordChangeView):
    """Django's password change, answering 400 (not 200) when the form has errors, like every page here."""

    def form_invalid(self, form):
        response = super().form_invalid(form)
        response.status_code = 400
        return response


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    form = SignupForm(request.POST or None)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            data = form.cleaned_data
            try:
                user = services.user_signup(
                    username=data["username"], email=data["email"], password=data["password1"], roles=data["roles"]
                )
            except ServiceError as exc:
                for name, reasons in (exc.fields or {None: [exc.message]}).items():
                    target = _SIGNUP_FIELD_FOR.get(name, name)
                    for reason in reasons:
                        form.add_error(target if target in form.fields else None, reason)
            else:
                login(request, user, backend="django.contrib.auth.backends.ModelBackend")
                messages.success(request, f"Welcome to Cloakroom, {user.username}.")
                return redirect("catalogue")
    return render(request, "registration/signup.html", {"form": form}, status=status)


def _keys_page(
    request: HttpRequest, form: ApiKeyForm, *, new_key: str | None = None, status: int = 200
) -> HttpResponse:
    return render(
        request,
        "accounts/api_keys.html",
        {"form": form, "keys": selectors.api_key_list(user=request.user), "new_key": new_key},
        status=status,
    )


@never_cache
@login_required
@require_http_methods(["GET", "POST"])
def api_keys(request: HttpRequest) -> HttpResponse:
    """List keys and create one. A new key is shown on this response only and never again."""
    if request.method == "GET":
        return _keys_page(request, ApiKeyForm())
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _keys_page(request, form, status=400)
    try:
        _, key = services.api_key_create(user=request.user, name=form.cleaned_data["name"])
    except ServiceError as exc:
        form.add_error("name" if "name" in exc.fields else None, exc.message)
        return _keys_page(request, form, status=exc.status_code)
    # Rendered, not redirected: the key exists in this response alone (never_cache keeps it out of caches).
    return _keys_page(request, ApiKeyForm(), new_key=key)


@login_required
@require_POST
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    try:
        row = services.api_key_revoke(user=request.user, key_id=key_id)
    except NotFound:
        raise Http404("No such API key.") from None
    messages.success(request, f"The key “{row.name}” ({row.prefix}…) is revoked; requests that use it now get 401.")
    return redirect("account-api-keys")


@login_required
@require_GET
def wallet(request: HttpRequest) -> HttpResponse:
    entries = Paginator(selectors.credit_entry_list(user=request.user), LEDGER_PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "accounts/wallet.html",
        {"balance": selectors.wallet_balance(user=request.user), "page_obj": entries, "entries": entries.object_list},
    )
