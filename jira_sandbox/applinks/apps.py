from django.apps import AppConfig


class AppLinksConfig(AppConfig):
    """Named after Jira's admin section so the sandbox admin reads like Jira's."""

    name = "jira_sandbox.applinks"
    label = "applinks"
    verbose_name = "Application links"
