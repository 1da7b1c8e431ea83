"""`UPDATE … RETURNING` for one row, on SQLite ≥ 3.35 and PostgreSQL.

Django 5.2's `QuerySet.update()` returns a count only. A compare-and-set
whose caller needs the row as it now stands would read it back: a second
statement, and a race. `update` writes and returns the row in one statement,
built from the model's meta, and makes the instance from it with the ORM's
own converters (`instance`, which other statements written from the meta
use too).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import Any

from django.db import connections, models


def supported(connection) -> bool:
    return connection.vendor in ("sqlite", "postgresql") and (
        connection.features.can_return_columns_from_insert  # RETURNING
    )


def update(
    connection,
    model,
    pk,
    changes: dict[str, Any],
    *,
    where: dict[str, Any],
    matched: Callable[[], object] | None = None,
) -> models.Model | None:
    """`UPDATE <table> SET <changes> WHERE pk = ? AND <where> RETURNING
    <every column>`: the row as it now stands, or None if none matched.
    `where` maps field names to the value they must hold (None: IS NULL; a
    tuple: one of its values, IN). `matched()` is called once the row is
    written, before the instance is made from it (what waits for the write
    need not wait for that)."""
    sql, params = _statement(connection, model._meta, pk, changes, where)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()  # all: SQLite ends the statement there
    if not rows:
        return None
    if matched is not None:
        matched()
    return instance(model, connection, rows[0])


def _statement(connection, meta, pk, changes: dict, where: dict) -> tuple[str, list]:
    params = []
    for name, value in changes.items():
        field = meta.get_field(name)
        if field.is_relation:  # a user, or None: written as its key
            value = value.pk if value is not None else None
        params.append(field.get_db_prep_save(value, connection))
    params.append(meta.pk.get_db_prep_value(pk, connection))
    for name, value in where.items():
        field = meta.get_field(name)
        for each in _values(value):
            params.append(field.get_db_prep_value(each, connection))
    shape = tuple(
        (name, len(_values(value)) if value is not None else None)
        for name, value in where.items()
    )
    return _sql(connection.alias, meta, tuple(changes), shape), params


def _values(value) -> tuple:
    """A `where` value as the parameters it takes: none for IS NULL."""
    if value is None:
        return ()
    return tuple(value) if isinstance(value, tuple) else (value,)


@functools.lru_cache(maxsize=64)
def _sql(alias: str, meta, changed: tuple, where: tuple) -> str:
    """The statement's text for one shape of call: the same on every call
    of a door (what changes is in the parameters)."""
    quote = connections[alias].ops.quote_name
    assignments = [f"{quote(meta.get_field(name).column)} = %s" for name in changed]
    conditions = [f"{quote(meta.pk.column)} = %s"]
    for name, count in where:
        column = quote(meta.get_field(name).column)
        if count is None:
            conditions.append(f"{column} IS NULL")
        elif count == 1:
            conditions.append(f"{column} = %s")
        else:
            conditions.append(f"{column} IN ({', '.join(['%s'] * count)})")
    columns = ", ".join(quote(field.column) for field in meta.concrete_fields)
    return (
        f"UPDATE {quote(meta.db_table)} SET {', '.join(assignments)} "
        f"WHERE {' AND '.join(conditions)} RETURNING {columns}"
    )


def instance(model, connection, row, *, local: bool = False) -> models.Model:
    """An instance from a row of every concrete column in order (`local`:
    the model's own, a parent's deferred), each value converted as the ORM
    converts what it reads (`SQLCompiler.apply_converters`): JSON decoded,
    SQLite's text made datetimes and UUIDs. (`raw()` does the same, at twice
    the cost.)"""
    names, converting = _reading(connection, model, local)
    if len(row) != len(names):
        raise ValueError(f"{len(row)} values for {len(names)} columns")
    values = list(row)
    for index, column, converters in converting:
        value = values[index]
        for converter in converters:
            value = converter(value, column, connection)
        values[index] = value
    return model.from_db(connection.alias, names, values)


#: Per connection (each thread has its own), per model: what `instance`
#: needs of the meta, worked out once (asking each field for its converters
#: was a fifth of a socket's session check).
_readers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _reading(connection, model, local: bool) -> tuple[list[str], list[tuple]]:
    """The attnames of the columns, and (index, column, converters) for each
    column whose value the ORM converts."""
    known = _readers.setdefault(connection, {})
    key = (model, local)
    if key not in known:
        meta = model._meta
        fields = meta.local_concrete_fields if local else meta.concrete_fields
        converting = []
        for index, field in enumerate(fields):
            column = field.get_col(meta.db_table)
            converters = connection.ops.get_db_converters(
                column
            ) + column.get_db_converters(connection)
            if converters:
                converting.append((index, column, converters))
        known[key] = ([field.attname for field in fields], converting)
    return known[key]
