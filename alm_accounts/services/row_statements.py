"""The two statements of every refresh, written once per process: the locked read of the grant and its UPDATE.

A refresh is two statements, and fewer is not possible: the grant's row must be locked before Jira is asked (Jira
rotates the refresh token) and the new pair written before the lock goes, each grant committing alone so that a
killed process loses at most the pair in flight. What is left to spend is building them. Built by the ORM, each
refresh builds the same two statements again (resolving the columns, the joins and the lock clause, compiling
the SQL): about a tenth of a refresh's CPU, enough to leave one refresh_tokens process behind the tree before the
redesign (benchmarks/README.md, "2026-12-07"). Their text never changes between refreshes, so it is written here
once per process, from the model's fields, and run through documented APIs only:

- the locked read through Manager.raw(), which builds the grant as any query does (Model.from_db, each field's
  from_db_value: the tokens are decrypted as always); the columns read along (GrantKind.fresh_along) come as
  raw()'s annotations, under the names GrantKind.locking_along gives them;
- the UPDATE through cursor.execute(), each value through Field.pre_save and Field.get_db_prep_save, as
  Model.save(update_fields=...) does (updated_at's auto_now, the tokens encrypted by their field).

No compiler, no private API: what a Django upgrade could change here is covered by
tests/test_row_statements.py, which holds both statements to what the ORM's select_for_update() and
save(update_fields=...) read and write, for both kinds of grant, on SQLite and PostgreSQL.

The locked read is written once only where the database has row locks (PostgreSQL): SQLite has none (Django
ignores select_for_update there; refreshes are serialised by BEGIN IMMEDIATE), returns joined columns without the
ORM's conversions, and is the development default, where a refresh's CPU does not count. A person's lock that
reads their account and person whole (no read-along rows handed in: an admin's action, a 401's retry) is left to
the ORM too: it is not the refresher's, and raw() does not build related rows.
"""

from __future__ import annotations

import functools

from django.db import DatabaseError, NotSupportedError, connections, router
from django.db.transaction import TransactionManagementError

from ..kinds import KINDS, fresh_column
from ..models import Grant


def quote(connection, name: str) -> str:
    return connection.ops.quote_name(name)


def written_once(kind_key: str, *, along: bool) -> bool:
    """Whether the locked read of a grant of this kind is the statement written here (see the module's text)."""
    model = KINDS[kind_key].model
    return connections[router.db_for_write(model)].features.has_select_for_update and (
        along or not KINDS[kind_key].read_along)


def lock(kind_key: str, pk: int, *, skip_locked: bool, along: bool) -> Grant | None:
    """The grant under its row lock (only its own row: OF the grant), as the ORM's
    `select_for_update(skip_locked=…, of=("self",), no_key=True)` of GrantKind.locking_along / locking reads it;
    None when there is no such row (or it is locked by another and `skip_locked`)."""
    model = KINDS[kind_key].model
    using = router.db_for_write(model)
    if connections[using].get_autocommit():
        # As the ORM's: a row lock outside a transaction would end with its statement.
        raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
    for grant in model.objects.db_manager(using).raw(_lock_sql(using, kind_key, skip_locked, along), [pk]):
        return grant
    return None


def store(grant: Grant, field_names: list[str]) -> None:
    """Write `field_names` of the grant (read under its lock) in one UPDATE, as grant.save(update_fields=…) does."""
    model = type(grant)
    using = router.db_for_write(model, instance=grant)
    fields, sql = _update_sql(using, model, tuple(field_names))
    connection = connections[using]
    values = [field.get_db_prep_save(field.pre_save(grant, False), connection=connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, [*values, grant.pk])
        updated = cursor.rowcount
    if updated == 0:
        raise DatabaseError("Save with update_fields did not affect any rows.")  # as Model.save's


def _concrete_columns(model) -> list[str]:
    return [field.column for field in model._meta.get_fields() if field.concrete and not field.many_to_many]


@functools.cache
def _lock_sql(using: str, kind_key: str, skip_locked: bool, along: bool) -> str:
    connection = connections[using]
    kind = KINDS[kind_key]
    model = kind.model
    q = functools.partial(quote, connection)
    table = q(model._meta.db_table)  # each table by its own name, as the ORM's statement names them
    select = [f"{table}.{q(column)}" for column in _concrete_columns(model)]
    joins = []
    for name, columns in kind.fresh_along.items() if along else ():
        link = model._meta.get_field(name)
        joined = q(link.related_model._meta.db_table)
        joins.append(f"{'LEFT OUTER' if link.null else 'INNER'} JOIN {joined} "
                     f"ON {table}.{q(link.column)} = {joined}.{q(link.target_field.column)}")
        select += [f"{joined}.{q(link.related_model._meta.get_field(column).column)} AS {q(fresh_column(name, column))}"
                   for column in columns]
    features = connection.features
    # As the ORM's: what the database cannot do is refused, not left out.
    if not (features.has_select_for_no_key_update and features.has_select_for_update_of
            and (features.has_select_for_update_skip_locked or not skip_locked)):
        raise NotSupportedError(f"{connection.vendor} cannot lock a grant's row as the refresher needs")
    # NO KEY UPDATE OF the grant only: see GrantRef.locked.
    clause = f" FOR NO KEY UPDATE OF {table}" + (" SKIP LOCKED" if skip_locked else "")
    # Only the model's own names, quoted, go into the text; the grant's id is a parameter.
    return (f"SELECT {', '.join(select)} FROM {' '.join([table, *joins])} "  # noqa: S608
            f"WHERE {table}.{q(model._meta.pk.column)} = %s{clause}")


@functools.cache
def _update_sql(using: str, model, field_names: tuple[str, ...]):
    connection = connections[using]
    q = functools.partial(quote, connection)
    fields = [model._meta.get_field(name) for name in field_names]
    if any(not field.concrete or field.many_to_many or field.primary_key for field in fields):
        raise ValueError(f"Not columns an UPDATE of {model.__name__} can write: {field_names}")
    assignments = ", ".join(f"{q(field.column)} = %s" for field in fields)
    # Only the model's own names, quoted, go into the text; the values and the grant's id are parameters.
    return fields, f"UPDATE {q(model._meta.db_table)} SET {assignments} WHERE {q(model._meta.pk.column)} = %s"  # noqa: S608
