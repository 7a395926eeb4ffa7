"""Account pages. The API's own key routes (/api/v1/api-keys/) already use the names "api-keys" and
"api-key-revoke", so the pages here are named "account-api-keys" and "account-api-key-revoke"."""

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from accounts import views

urlpatterns = [
    path("signup/", views.signup, name="signup"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "password/",
        views.PasswordChangeView.as_view(success_url=reverse_lazy("password-change-done")),
        name="password-change",
    ),
    path("password/done/", auth_views.PasswordChangeDoneView.as_view(), name="password-change-done"),
    path("keys/", views.api_keys, name="account-api-keys"),
    path("keys/<int:key_id>/revoke/", views.api_key_revoke, name="account-api-key-revoke"),
    path("wallet/", views.wallet, name="wallet"),
]
