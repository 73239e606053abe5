from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

admin.site.site_header = "Kendis integration — Settings"
admin.site.site_title = "Kendis integration"
admin.site.index_title = "Settings"

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("", include("alm_accounts.urls")),
]
