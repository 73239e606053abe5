"""The three statements of every refresh, built once and then only given their values.

refresh_tokens refreshes thousands of grants on a couple of cores, and building
a query through the ORM cost more CPU than running it: the locked SELECT of a
person's credential (joined with its account and person) took about 1.2 ms of
CPU to build for 0.2 ms to run, the token UPDATE and the audit INSERT about
0.3-0.5 ms each. Here the locked SELECT is compiled once per thread by Django's
own compiler (the same SQL, the same model instances, secrets decrypted by their
fields), and the UPDATE and INSERT are written once per model from its fields
(values prepared by the fields, as save() does). Same statements, same count.

Anything these shortcuts do not cover (a model with its own save() or signal
receivers, fields or values that need their own SQL, a database that cannot
return the new id) goes through the ORM as before.
"""

from __future__ import annotations

import threading

from django.db import DatabaseError, connections, router
from django.db.models import Model, QuerySet, signals
from django.db.models.query import get_related_populators
from django.db.transaction import TransactionManagementError

_PK_PLACEHOLDER = -271828  # stands for the primary key while the SELECT is compiled; found once in its parameters
_per_thread = threading.local()  # compiled SELECTs: a compiler belongs to its thread's connection
_written: dict[tuple, tuple[str, list]] = {}  # UPDATE / INSERT texts: plain strings, shared by every thread


class _Select:
    """A compiled SELECT of one row by primary key, and how to turn its row into model instances."""

    def __init__(self, queryset: QuerySet, connection):
        self.connection = connection
        queryset = queryset.filter(pk=_PK_PLACEHOLDER)
        queryset = (queryset if queryset.ordered else queryset.order_by("pk"))[:1]  # as QuerySet.first()
        # As the compiler: a lock outside a transaction is refused where locks exist (not on SQLite).
        self.for_update = queryset.query.select_for_update and connection.features.has_select_for_update
        compiler = queryset.query.get_compiler(connection=connection)
        self.sql, params = compiler.as_sql()
        self.usable = list(params) == [_PK_PLACEHOLDER] and not queryset.query.annotation_select
        if not self.usable:
            return
        # As django.db.models.query.ModelIterable, for one row.
        self.compiler = compiler
        self.converters = compiler.get_converters([column[0] for column in compiler.select[:compiler.col_count]])
        klass_info = compiler.klass_info
        self.model = klass_info["model"]
        selected = klass_info["select_fields"]
        self.start, self.end = selected[0], selected[-1] + 1
        self.attnames = [column[0].target.attname for column in compiler.select[self.start:self.end]]
        self.populators = get_related_populators(klass_info, compiler.select, connection.alias)

    def one(self, pk) -> Model | None:
        connection = self.connection
        if self.for_update and connection.get_autocommit():
            raise TransactionManagementError("select_for_update cannot be used outside of a transaction.")
        with connection.cursor() as cursor:
            cursor.execute(self.sql, [pk])
            row = cursor.fetchone()
        if row is None:
            return None
        if self.converters:
            row = next(iter(self.compiler.apply_converters([row], self.converters)))
        instance = self.model.from_db(connection.alias, self.attnames, row[self.start:self.end])
        for populator in self.populators:
            populator.populate(row, instance)
        return instance


def first_by_pk(name: str, build, pk, *, using: str) -> Model | None:
    """`build().filter(pk=pk).first()`, compiled once per thread and name (`build` must always make the same
    queryset: locks, joins and filters included)."""
    connection = connections[using]
    cache = _per_thread.__dict__.setdefault("selects", {})
    select = cache.get(name)
    if select is None or select.connection is not connection:
        select = cache[name] = _Select(build(), connection)
    if not select.usable:
        return build().filter(pk=pk).first()
    return select.one(pk)


def _saved_by_the_orm(model) -> bool:
    """A model whose save() does more than Django's (its own save(), signal receivers, parent tables)."""
    return (model.save is not Model.save or bool(model._meta.parents) or signals.pre_save.has_listeners(model)
            or signals.post_save.has_listeners(model))


def _needs_own_sql(field, value) -> bool:
    return (hasattr(field, "get_placeholder") or hasattr(value, "resolve_expression")
            or getattr(field, "generated", False))


def update_fields(instance: Model, field_names: list[str]) -> None:
    """`instance.save(update_fields=field_names)` with the UPDATE written once per model and field list."""
    model = type(instance)
    using = instance._state.db or router.db_for_write(model, instance=instance)
    connection = connections[using]
    meta = model._meta
    key = ("update", model, tuple(field_names), using)
    if key not in _written:
        fields = [meta.get_field(name) for name in field_names]
        quote = connection.ops.quote_name
        assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
        # Only quoted names of the model's own table and columns; every value is a parameter.
        _written[key] = (f"UPDATE {quote(meta.db_table)} SET {assignments} "  # noqa: S608
                         f"WHERE {quote(meta.pk.column)} = %s", fields)
    sql, fields = _written[key]
    values = [field.pre_save(instance, False) for field in fields]
    if _saved_by_the_orm(model) or any(map(_needs_own_sql, fields, values)):
        instance.save(update_fields=field_names)
        return
    params = [field.get_db_prep_save(value, connection) for field, value in zip(fields, values, strict=True)]
    params.append(meta.pk.get_db_prep_value(instance.pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.rowcount == 0:
            raise DatabaseError("Save with update_fields did not affect any rows.")
    instance._state.adding = False
    instance._state.db = using


def insert(instance: Model) -> Model:
    """`instance.save(force_insert=True)` for a new row, with the INSERT written once per model."""
    model = type(instance)
    using = router.db_for_write(model, instance=instance)
    connection = connections[using]
    meta = model._meta
    returning = meta.db_returning_fields
    if _saved_by_the_orm(model) or not connection.features.can_return_columns_from_insert:
        instance.save(force_insert=True, using=using)
        return instance
    instance._prepare_related_fields_for_save(operation_name="save")
    key = ("insert", model, instance.pk is None, using)
    if key not in _written:
        fields = [field for field in meta.local_concrete_fields
                  if not (instance.pk is None and field is meta.auto_field)]
        quote = connection.ops.quote_name
        returning_sql, returning_params = connection.ops.return_insert_columns(returning)
        if returning_params:
            fields = None  # not a plain RETURNING: the ORM knows
        columns = ", ".join(quote(field.column) for field in fields or ())
        _written[key] = (f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES "  # noqa: S608 - names only
                         f"({', '.join(['%s'] * len(fields or ()))}) {returning_sql}", fields)
    sql, fields = _written[key]
    values = [field.pre_save(instance, True) for field in fields or ()]
    if fields is None or any(map(_needs_own_sql, fields, values)):
        instance.save(force_insert=True, using=using)
        return instance
    params = [field.get_db_prep_save(value, connection) for field, value in zip(fields, values, strict=True)]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    for field, value in zip(returning, row, strict=True):
        column = field.get_col(meta.db_table)
        for converter in connection.ops.get_db_converters(column) + column.get_db_converters(connection):
            value = converter(value, column, connection)  # as the ORM's INSERT ... RETURNING does
        setattr(instance, field.attname, value)
    instance._state.adding = False
    instance._state.db = using
    return instance
