"""URL map. No route serves stored dataset files: MEDIA_ROOT is private and never mapped."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularSwaggerView

from compute import dashboard

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("config.api_urls")),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("privacy/", TemplateView.as_view(template_name="privacy.html"), name="privacy"),
    # The owner's dashboard shows marketplace datasets with compute's job counts: compute's page, routed
    # here because the marketplace's URL map may not import compute.
    path("dashboard/", dashboard.owner_dashboard, name="owner-dashboard"),
    path("", include("marketplace.urls")),
    path("", include("compute.urls")),
    path("accounts/", include("accounts.urls")),
]

handler400 = "config.errors.json_400"
handler404 = "config.errors.json_404"
handler500 = "config.errors.json_500"
