from django.apps import AppConfig


class ServiceAccountsConfig(AppConfig):
    """Named after Jira's admin section (User management → Service accounts)."""

    name = "jira_sandbox.serviceaccounts"
    label = "serviceaccounts"
    verbose_name = "Service accounts"
