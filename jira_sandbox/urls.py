"""Jira's URL layout, so a client configured with the sandbox's origin as Jira base URL just works.

Atlassian Cloud's two hosts live under cloud-auth/ and cloud-api/ (see cloud/urls.py).
"""

from django.contrib import admin
from django.urls import include, path
from oauth2_provider.views import RevokeTokenView

from . import account_views, oauth_views, rest_api, stats
from .issues import rest as issues_rest

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
    path("rest/api/2/issue", issues_rest.create_issue, name="issue-create"),
    path("rest/api/2/issue/<str:id_or_key>", issues_rest.get_issue, name="issue"),
    path("rest/api/2/search", issues_rest.search, name="search"),
]

sandbox_urlpatterns = [
    path("", account_views.home, name="home"),
    path("login/", account_views.SandboxLoginView.as_view(), name="login"),
    path("logout/", account_views.logout_view, name="logout"),
    path("sandbox/stats", stats.stats_view, name="sandbox-stats"),
    path("admin/", admin.site.urls),
]

cloud_urlpatterns = [path("", include("jira_sandbox.cloud.urls"))]

urlpatterns = oauth2_urlpatterns + rest_api_urlpatterns + sandbox_urlpatterns + cloud_urlpatterns
