"""System checks: the encryption keys are usable and can read what is stored; the database fits production.

Every management command (`manage.py check`, runserver, refresh_tokens, ...) reports:
- alm_accounts.E001: FIELD_ENCRYPTION_KEY is missing or holds a malformed key;
- alm_accounts.W002: SQLite with DEBUG off.
Where the database is meant to be used - `manage.py migrate` (at every deploy) and
`manage.py check --database default` - also:
- alm_accounts.E002: stored secrets cannot be decrypted with any configured key;
- alm_accounts.W001: some secrets are still encrypted with an older key (run reencrypt_secrets).
Those two read the database, so they are tagged `database`: Django passes such checks the databases to
check, and none for `check`, `check --deploy` or `collectstatic`, which must work on a build host that
cannot reach the database.
"""

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, DatabaseError

from .fields import crypter, is_encrypted_with_primary_key
from .secrets_store import stored_ciphertexts


def _key_problems():
    try:
        crypter()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint="Generate a key with: python scripts/make_env.py --print-key",
                      id="alm_accounts.E001")]
    return []


@register()
def check_encryption_key_setting(app_configs=None, **kwargs):
    return _key_problems()


@register(Tags.database)
def check_stored_secrets(app_configs=None, databases=None, **kwargs):
    # Django runs every check, tagged or not, and passes the databases it may use (None: not one).
    if DEFAULT_DB_ALIAS not in (databases or ()) or _key_problems():
        return []  # a malformed key is E001 already
    return check_encryption_keys()


@register()
def check_database_for_production(app_configs=None, **kwargs):
    if settings.DEBUG or settings.DATABASES[DEFAULT_DB_ALIAS]["ENGINE"] != "django.db.backends.sqlite3":
        return []
    return [Warning(
        "SQLite is used with DEBUG off.",
        hint="Token refreshes hold SQLite's single write lock while Jira answers, so every other write (the "
             "admin, the callback, other refreshes) waits; use PostgreSQL in production: "
             "DATABASE_URL=postgres://user:password@host:5432/kendis.",
        id="alm_accounts.W002",
    )]


def check_encryption_keys(app_configs=None, **kwargs):
    """The key (E001), then every stored secret (E002, W001): reads the database."""
    if problems := _key_problems():
        return problems
    try:
        ciphertexts = list(stored_ciphertexts())
    except DatabaseError:
        return []  # no tables yet (before migrate): nothing stored to check
    fernet = crypter()
    unreadable = old_key = 0
    for ciphertext in ciphertexts:
        try:
            fernet.decrypt(ciphertext.encode("utf-8"))
        except Exception:  # noqa: BLE001 - InvalidToken or garbage: either way unreadable
            unreadable += 1
            continue
        if not is_encrypted_with_primary_key(ciphertext):
            old_key += 1
    problems = []
    if unreadable:
        problems.append(Error(
            f"{unreadable} stored secret(s) cannot be decrypted with any key in FIELD_ENCRYPTION_KEY.",
            hint="Put back the key they were encrypted with (keys can be listed comma-separated; the first "
                 "encrypts). Affected accounts cannot reach Jira until then; nothing is overwritten.",
            id="alm_accounts.E002",
        ))
    if old_key:
        problems.append(Warning(
            f"{old_key} stored secret(s) are encrypted with an older key.",
            hint="Run: python manage.py reencrypt_secrets, then remove the old key.",
            id="alm_accounts.W001",
        ))
    return problems
