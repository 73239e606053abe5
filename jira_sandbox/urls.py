"""Jira's URL layout, so a client configured with the sandbox's origin as Jira base URL just works."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView
from oauth2_provider.views import RevokeTokenView

from . import oauth_views, rest_api, stats

admin.site.site_header = "Jira Sandbox administration"
admin.site.site_title = "Jira Sandbox"

oauth2_urlpatterns = [
    # No trailing slash, exactly as Jira: clients must not get a redirect here.
    path("rest/oauth2/latest/authorize", oauth_views.ConsentView.as_view(), name="authorize"),
    path("rest/oauth2/latest/token", oauth_views.JiraTokenView.as_view(), name="token"),
    path("rest/oauth2/latest/revoke", RevokeTokenView.as_view(), name="revoke"),
]

rest_api_urlpatterns = [
    path("rest/api/2/myself", rest_api.myself, name="myself"),
    path("rest/api/2/serverInfo", rest_api.server_info, name="server-info"),
]

sandbox_urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("login/", auth_views.LoginView.as_view(template_name="sandbox/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(next_page="/login/"), name="logout"),
    path("sandbox/stats", stats.stats_view, name="sandbox-stats"),
    path("admin/", admin.site.urls),
]

urlpatterns = oauth2_urlpatterns + rest_api_urlpatterns + sandbox_urlpatterns
