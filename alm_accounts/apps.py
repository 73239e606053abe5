from django.apps import AppConfig


class AlmAccountsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "alm_accounts"
    verbose_name = "Settings"

    def ready(self):
        from . import checks  # noqa: F401 - registers the system checks
