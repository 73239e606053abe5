"""Re-encrypt every stored secret with the first key of FIELD_ENCRYPTION_KEY.

Key rotation: put the new key first (NEW,OLD), run this command, then remove
the old key. Each row is rewritten in its own short transaction under its row
lock, and only when a value is not already encrypted with the first key: the
command is idempotent and safe to interrupt and run again.
"""

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError
from django.db import connection, transaction

from alm_accounts.fields import crypter, is_encrypted_with_primary_key
from alm_accounts.secrets_store import ENCRYPTED_COLUMNS, raw_rows


class Command(BaseCommand):
    help = "Re-encrypt all stored secrets (client secrets, tokens) with the first key in FIELD_ENCRYPTION_KEY."
    # The key checks (alm_accounts.E002: some secret is unreadable) would stop the
    # command before it re-encrypts the readable ones and names the unreadable ones.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="Count what would be re-encrypted; write nothing.")

    def handle(self, *args, dry_run, verbosity, **options):
        try:
            fernet = crypter()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc), returncode=1) from None
        counts = {"re-encrypted": 0, "already current": 0, "unreadable": 0}
        for model, columns in ENCRYPTED_COLUMNS.items():
            for pk, *values in raw_rows(model, columns):
                changes = {}
                for column, value in zip(columns, values, strict=True):
                    if value is None:
                        continue
                    if is_encrypted_with_primary_key(value):
                        counts["already current"] += 1
                        continue
                    try:
                        changes[column] = fernet.rotate(value.encode("utf-8")).decode("ascii")
                    except Exception:  # noqa: BLE001 - no configured key opens it
                        counts["unreadable"] += 1
                        self.stderr.write(f"{model._meta.verbose_name} #{pk}: {column} cannot be decrypted with any "
                                          "configured key; left as it is.")
                written = self._write(model, pk, values, columns, changes) if changes and not dry_run else len(changes)
                counts["re-encrypted"] += written
                counts["already current"] += len(changes) - written  # rewritten (or wiped) meanwhile
        verb = "would be re-encrypted" if dry_run else "re-encrypted"
        self.stdout.write(
            f"{counts['re-encrypted']} secret(s) {verb}, {counts['already current']} already current, "
            f"{counts['unreadable']} unreadable."
        )
        if counts["unreadable"]:
            raise CommandError("Some secrets cannot be decrypted: add the key they were encrypted with and run "
                               "again.", returncode=1)

    @staticmethod
    def _write(model, pk, seen, columns, changes) -> int:
        """Write the re-encrypted values; return how many were written.

        Conditional on the ciphertext still being what we read: a refresh that
        rotated the token meanwhile wins (it already used the first key).
        """
        table = connection.ops.quote_name(model._meta.db_table)
        written = 0
        with transaction.atomic(), connection.cursor() as cursor:
            for column, new in changes.items():
                name = connection.ops.quote_name(column)
                cursor.execute(
                    f"UPDATE {table} SET {name} = %s WHERE id = %s AND {name} = %s",  # noqa: S608 - quoted names
                    [new, pk, seen[columns.index(column)]],
                )
                written += cursor.rowcount
        return written
