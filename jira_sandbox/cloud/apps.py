from django.apps import AppConfig


class CloudConfig(AppConfig):
    """Atlassian Cloud played by the sandbox: the authorization server, the API gateway and two sites."""

    name = "jira_sandbox.cloud"
    label = "cloud"
    verbose_name = "Atlassian Cloud"
