"""Raw access to the encrypted columns, for checks and key rotation.

Reads the ciphertext as stored (no decryption through the model field).
"""

from collections.abc import Iterator

from .models import ALMAccount, ALMCredential, PendingAuthorization

# model -> its encrypted columns (every SecretField: key checks and reencrypt_secrets must see them all)
ENCRYPTED_COLUMNS = {
    ALMAccount: ["client_secret", "access_token", "refresh_token"],
    ALMCredential: ["access_token", "refresh_token"],
    PendingAuthorization: ["code_verifier"],
}


def raw_rows(model, columns) -> Iterator[tuple]:
    """(pk, *ciphertexts) for every row, straight from the database."""
    from django.db import connection

    table = connection.ops.quote_name(model._meta.db_table)
    names = ", ".join(connection.ops.quote_name(c) for c in ["id", *columns])
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {names} FROM {table} ORDER BY id")  # noqa: S608 - identifiers quoted, no input
        while rows := cursor.fetchmany(500):
            yield from rows


def stored_ciphertexts() -> Iterator[str]:
    for model, columns in ENCRYPTED_COLUMNS.items():
        for row in raw_rows(model, columns):
            yield from (value for value in row[1:] if value is not None)
