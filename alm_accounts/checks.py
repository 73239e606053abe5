"""System checks: the encryption keys are usable and can read what is stored.

`manage.py check` (and every server start) reports:
- alm_accounts.E001: FIELD_ENCRYPTION_KEY is missing or holds a malformed key;
- alm_accounts.E002: stored secrets cannot be decrypted with any configured key;
- alm_accounts.W001: some secrets are still encrypted with an older key (run reencrypt_secrets).
"""

from django.core.checks import Error, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError

from .fields import crypter, is_encrypted_with_primary_key
from .secrets_store import stored_ciphertexts


@register()
def check_encryption_keys(app_configs=None, **kwargs):
    try:
        crypter()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), hint="Generate a key with: python scripts/make_env.py --print-key",
                      id="alm_accounts.E001")]
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
