"""`manage.py check`, which also reads the stored secrets: a wrong FIELD_ENCRYPTION_KEY is reported here too.

Django's own `check` runs the checks that read a database (alm_accounts.E002: stored secrets that no
configured key decrypts; W001: secrets still under an older key) only with `--database`. An operator who
swapped in a wrong key runs `manage.py check` and must hear about it there, not first from `migrate`: so a
plain `check` uses the default database. `check --deploy` keeps Django's rule and never touches the database
(it runs on build hosts that cannot reach it); a database that does not answer is not an error here either.
"""

from django.core.management.commands.check import Command as DjangoCheckCommand
from django.db import DEFAULT_DB_ALIAS


class Command(DjangoCheckCommand):
    help = DjangoCheckCommand.help + (
        " Without --deploy it also reads the stored secrets of the default database (alm_accounts.E002)."
    )

    def handle(self, *app_labels, **options):
        if not options.get("databases") and not options.get("deploy"):
            options["databases"] = [DEFAULT_DB_ALIAS]
        return super().handle(*app_labels, **options)
