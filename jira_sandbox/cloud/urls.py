"""Two hosts in one server: the authorization server under cloud-auth/, the API gateway under cloud-api/.

Nothing is reachable under both prefixes, so a client that derives one URL from the other gets a 404.
"""

from django.urls import path

from . import auth_views, gateway, issues_rest

_JIRA = "cloud-api/ex/jira/<str:cloud_id>/rest/api/3/"

urlpatterns = [
    path("cloud-auth/authorize", auth_views.authorize, name="cloud-authorize"),
    path("cloud-auth/oauth/token", auth_views.token, name="cloud-token"),
    path("cloud-api/oauth/token/accessible-resources", gateway.accessible_resources, name="cloud-accessible-resources"),
    path(_JIRA + "myself", gateway.myself, name="cloud-myself"),
    path(_JIRA + "serverInfo", gateway.server_info, name="cloud-server-info"),
    path(_JIRA + "issue", issues_rest.create_issue, name="cloud-issue-create"),
    path(_JIRA + "issue/<str:id_or_key>", issues_rest.get_issue, name="cloud-issue"),
    path(_JIRA + "search", issues_rest.search, name="cloud-search"),
]
