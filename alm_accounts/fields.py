"""Encrypted secret fields that fail safe.

django-encrypted-model-fields returns the raw ciphertext when a value cannot be
decrypted (wrong or missing key). A ciphertext used as a client secret would be
sent to Jira, shown in a form, or - worst - re-encrypted over the real value on
the next save. `SecretField` instead loads such a value as `UnreadableSecret`,
which is not a string (so it cannot be sent or shown by accident) and is
written back byte for byte on save (so nothing is lost until the right key is
configured again).

Keys come from settings.FIELD_ENCRYPTION_KEY (a list; the first encrypts, all
decrypt) and are read when used, not at import, so a changed setting (key
rotation, tests) takes effect at once. Encryption itself is the library's
crypter, so values stay in its format (and readable by its own fields).
"""

from __future__ import annotations

import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models


class UnreadableSecret:
    """A stored secret that the configured keys cannot decrypt."""

    __slots__ = ("ciphertext",)

    def __init__(self, ciphertext: str):
        self.ciphertext = ciphertext

    def __repr__(self):
        return "<secret that cannot be decrypted with FIELD_ENCRYPTION_KEY>"

    __str__ = __repr__

    def __bool__(self):
        return True  # something is stored

    def __eq__(self, other):
        return isinstance(other, UnreadableSecret) and other.ciphertext == self.ciphertext

    def __hash__(self):
        return hash(self.ciphertext)


def configured_keys() -> list[str]:
    keys = settings.FIELD_ENCRYPTION_KEY
    if isinstance(keys, str):
        keys = [keys]
    return [k.strip() for k in keys if k and k.strip()]


@functools.lru_cache(maxsize=8)
def _crypter_for(keys: tuple[str, ...]) -> MultiFernet:
    if not keys:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY is empty: set at least one Fernet key.")
    try:
        [Fernet(k) for k in keys]
    except (ValueError, TypeError):
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY holds a value that is not a Fernet key (32 url-safe base64-encoded bytes)."
        ) from None
    # django-encrypted-model-fields' crypter: a MultiFernet over the key list
    # (the first key encrypts, all decrypt). Imported here and not at the top:
    # that module builds a crypter when it is imported, so a malformed key
    # would stop every command before the E001 check could explain it.
    from encrypted_model_fields.fields import get_crypter

    return get_crypter()


def crypter() -> MultiFernet:
    return _crypter_for(tuple(configured_keys()))


def encrypt(plaintext: str) -> str:
    return crypter().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(ciphertext: str) -> str | UnreadableSecret:
    try:
        return crypter().decrypt(ciphertext.encode("utf-8")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        return UnreadableSecret(ciphertext)


def is_encrypted_with_primary_key(ciphertext: str) -> bool:
    try:
        Fernet(configured_keys()[0]).decrypt(ciphertext.encode("utf-8"))
    except (InvalidToken, UnicodeError, IndexError):
        return False
    return True


class SecretField(models.TextField):
    """A Fernet-encrypted text column; NULL means "nothing stored".

    Not based on encrypted_model_fields' EncryptedTextField: importing that
    module builds a crypter from FIELD_ENCRYPTION_KEY at import time, so a
    malformed key crashed every manage.py command with a traceback before the
    alm_accounts.E001 check could explain it. Every method it provided is
    defined here.
    """

    def from_db_value(self, value, expression, connection):
        if value is None:
            return None
        return decrypt(value)

    def to_python(self, value):
        # Values from forms and code are plaintext; never try to decrypt them.
        if value is None or isinstance(value, (str, UnreadableSecret)):
            return value
        return str(value)

    def get_db_prep_save(self, value, connection):
        if value is None:
            return None
        if isinstance(value, UnreadableSecret):
            return value.ciphertext  # keep exactly what was stored
        return encrypt(str(value))
