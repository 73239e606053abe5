from django.apps import AppConfig


class AlmAccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "alm_accounts"
    verbose_name = "Settings"

    def ready(self):
        from . import checks, signals  # noqa: F401 - checks registers the system checks

        signals.connect()  # a person made inactive or deleted loses their Jira credentials
