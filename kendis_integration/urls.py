from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from alm_accounts import health, my_credentials

admin.site.site_header = "Kendis integration — Settings"
admin.site.site_title = "Kendis integration"
admin.site.index_title = "Settings"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    # Before admin/: the admin's catch-all would answer these paths with its own 404.
    path("admin/my-alm-credentials/", include(my_credentials.urls())),
    path("admin/", admin.site.urls),
    # health.ProbeMiddleware answers /healthz and /readyz first (before the HTTPS redirect); these routes name
    # them and keep them working behind it should the middleware be left out.
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
    path("", include("alm_accounts.urls")),
]
