from django.apps import AppConfig


class IssuesConfig(AppConfig):
    """Projects and issues, just enough to see who did what in Jira."""

    name = "jira_sandbox.issues"
    label = "issues"
    verbose_name = "Issues"
