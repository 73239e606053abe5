from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from alm_accounts import my_credentials

admin.site.site_header = "Kendis integration — Settings"
admin.site.site_title = "Kendis integration"
admin.site.index_title = "Settings"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    # Before admin/: the admin's catch-all would answer these paths with its own 404.
    path("admin/my-alm-credentials/", include(my_credentials.urls())),
    path("admin/", admin.site.urls),
    path("", include("alm_accounts.urls")),
]
