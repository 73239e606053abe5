"""Two hosts in one server: the authorization server under cloud-auth/, the API gateway under cloud-api/.

Nothing is reachable under both prefixes, so a client that derives one URL from the other gets a 404.
Jira's REST API answers as version 3 and as version 2, as Jira Cloud does (views get `version`).
"""

from django.urls import path, register_converter

from . import auth_views, gateway, issues_rest


class ApiVersion:
    """Jira Cloud's REST API versions: 2 and 3 (anything else is a 404, as on Jira Cloud)."""

    regex = "[23]"

    def to_python(self, value):
        return int(value)

    def to_url(self, value):
        return str(value)


register_converter(ApiVersion, "jira_api")
_JIRA = "cloud-api/ex/jira/<str:cloud_id>/rest/api/<jira_api:version>/"

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
