"""Plain-SQL inserts for the request paths that run hundreds of times a second.

``Model.save`` and ``QuerySet.bulk_create`` compile their INSERT anew on every call; under the volunteer
load benchmark that compilation, not the database, was most of what storing a classification cost. Here
the statement is built once per model, row count and conflict clause, and the values still go through
each field's own ``pre_save`` and ``get_db_prep_save`` (``auto_now_add`` times, JSON adaptation), so the
rows are exactly what the ORM would write. Errors come out as Django's (``IntegrityError``), as from the ORM.

On PostgreSQL these statements, and the hot paths' other plain-SQL reads, go through :func:`prepared_cursor`:
PostgreSQL parses and plans each of them once per connection instead of on every call.
"""
from __future__ import annotations

from contextlib import nullcontext
from functools import lru_cache
from typing import Sequence

from django.db import DEFAULT_DB_ALIAS, connection, connections, models, transaction
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models.fields import AutoFieldMixin


def prepared_cursor():
    """Django's cursor for a statement that runs hundreds of times a second. On PostgreSQL it binds its
    parameters on the server, so psycopg prepares each statement on its first use on a connection
    (``prepare_threshold`` in the database ``OPTIONS``) and PostgreSQL parses and plans it only once: parse
    and plan were three quarters of PostgreSQL's CPU for the submit lookup and the servable check. Every
    int goes as int8, so one statement stays one prepared statement whatever the size of its ids.

    Elsewhere (SQLite, or ``DB_PREPARED_STATEMENTS`` off for a connection pooler that cannot keep prepared
    statements), Django's own cursor. Either way queries are logged, errors are Django's and the
    connection's health check runs as for ``connection.cursor()``. One statement per call: the server
    cannot run several in one ``execute``."""
    conn = connections[DEFAULT_DB_ALIAS]  # this thread's wrapper, looked up once rather than per attribute
    if conn.vendor != "postgresql" or conn.settings_dict["OPTIONS"].get("prepare_threshold") is None:
        return conn.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor
    from psycopg.types.numeric import Int8Dumper

    conn.close_if_health_check_failed()
    conn.ensure_connection()
    conn.validate_thread_sharing()
    with conn.wrap_database_errors:
        cursor = ServerBindingCursor(conn.connection)
    cursor.adapters.register_dumper(int, Int8Dumper)
    return _PreparedDebugWrapper(cursor, conn) if conn.queries_logged else conn.make_cursor(cursor)


class _PreparedDebugWrapper(CursorDebugWrapper):
    """Logs a statement with its parameters, as Django logs its own: psycopg keeps no query text of a
    prepared execution for Django to read back."""

    def execute(self, sql, params=None):
        with self.debug_sql(self.db.ops.compose_sql(sql, params), params):
            return CursorWrapper.execute(self, sql, params)


@lru_cache(maxsize=64)
def _converters(model: type[models.Model], conn) -> tuple:
    """(column index, column, converters) for each of ``model``'s concrete columns the ORM converts when
    reading, on the connection wrapper ``conn`` (whose operations some converters use)."""
    out = []
    for i, field in enumerate(model._meta.concrete_fields):
        col = field.get_col(model._meta.db_table)
        found = conn.ops.get_db_converters(col) + field.get_db_converters(conn)
        if found:
            out.append((i, col, tuple(found)))
    return tuple(out)


def models_from_rows(model: type[models.Model], rows) -> list[models.Model]:
    """Instances of ``model`` from rows that hold its concrete columns in ``_meta`` order, each value
    converted as the ORM converts it (JSON, SQLite's dates), as ``Model.objects.raw`` would build them."""
    conn = connections[DEFAULT_DB_ALIAS]
    names = [f.attname for f in model._meta.concrete_fields]
    converters = _converters(model, conn)
    out = []
    for row in rows:
        values = list(row)
        for i, col, funcs in converters:
            for func in funcs:
                values[i] = func(values[i], col, conn)
        out.append(model.from_db(conn.alias, names, values))
    return out


def _fields(model: type[models.Model]) -> list[models.Field]:
    return [f for f in model._meta.concrete_fields if not (f.primary_key and isinstance(f, AutoFieldMixin))]


@lru_cache(maxsize=256)
def _insert_sql(model: type[models.Model], vendor: str, n_rows: int, returning: bool,
                conflict: tuple[tuple[str, ...], tuple[str, ...]] | None) -> str:
    q = connection.ops.quote_name
    fields = _fields(model)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (f"INSERT INTO {q(model._meta.db_table)} ({', '.join(q(f.column) for f in fields)}) "
           f"VALUES {', '.join([row] * n_rows)}")
    if conflict is not None:
        unique, update = ([q(model._meta.get_field(name).column) for name in names] for names in conflict)
        sql += f" ON CONFLICT ({', '.join(unique)}) DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in update)
    if returning:
        sql += f" RETURNING {q(model._meta.pk.column)}"
    return sql


def _values(objs: Sequence[models.Model], fields: list[models.Field]) -> list:
    return [f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in objs for f in fields]


def _statement():
    """Outside a transaction a statement is atomic by itself (autocommit); inside one, a savepoint keeps a
    failed statement (an ``IntegrityError`` the caller handles) from aborting the whole transaction."""
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


def _saved(obj: models.Model, pk) -> None:
    obj.pk = pk
    obj._state.adding, obj._state.db = False, connection.alias


def _execute_insert(objs: Sequence[models.Model], *, returning_pk: bool, conflict=None, prefix: str = "") -> None:
    model = type(objs[0])
    sql = prefix + _insert_sql(model, connection.vendor, len(objs), returning_pk, conflict)
    with (connection.cursor() if prefix else prepared_cursor()) as cursor:
        cursor.execute(sql, _values(objs, _fields(model)))
        if returning_pk:
            if prefix and cursor.description is None:  # the prefix statement's result comes first
                cursor.nextset()
            for obj, (pk,) in zip(objs, cursor.fetchall()):
                _saved(obj, pk)


def insert(objs: Sequence[models.Model], *, returning_pk: bool = False,
           unique_fields: Sequence[str] = (), update_fields: Sequence[str] = (), durable: bool = True) -> None:
    """INSERT ``objs`` (instances of one model) in one statement; with ``returning_pk`` each gets its
    primary key. With ``unique_fields`` and ``update_fields``, an existing row with the same unique
    values is updated instead (``ON CONFLICT ... DO UPDATE``, as ``bulk_create(update_conflicts=True)``).
    No signals are sent and no validation is run (call ``full_clean`` first where it matters).

    ``durable=False``, on PostgreSQL outside any transaction: the statement commits without waiting for
    its WAL flush (``SET LOCAL synchronous_commit = off`` travels with it in the same round trip and
    implicit transaction), so a database crash could forget the last fraction of a second of these rows.
    Only for rows that can be lost (a served subject), never for a classification. Inside a transaction,
    the transaction's own setting applies."""
    if not objs:
        return
    conflict = (tuple(unique_fields), tuple(update_fields)) if unique_fields else None
    lossy = not durable and connection.vendor == "postgresql" and not connection.in_atomic_block
    with _statement():
        _execute_insert(objs, returning_pk=returning_pk, conflict=conflict,
                        prefix="SET LOCAL synchronous_commit = off; " if lossy else "")


def _child_fields(child: type[models.Model], fk: str) -> tuple[models.Field, list[models.Field]]:
    """The foreign key ``fk`` of ``child`` and its other inserted fields."""
    fk_field = child._meta.get_field(fk)
    return fk_field, [f for f in _fields(child) if f.column != fk_field.column]


@lru_cache(maxsize=256)
def _with_children_sql(parent: type[models.Model], child: type[models.Model], fk: str, vendor: str, n: int) -> str:
    q = connection.ops.quote_name
    fk_field, fields = _child_fields(child, fk)
    columns = ", ".join(q(f.column) for f in fields)
    row = "(" + ", ".join(f"%s::{f.db_type(connection)}" for f in fields) + ")"
    pk = q(parent._meta.pk.column)
    return (f"WITH p AS ({_insert_sql(parent, vendor, 1, True, None)}), "
            f"c AS (INSERT INTO {q(child._meta.db_table)} ({q(fk_field.column)}, {columns}) "
            f"SELECT p.{pk}, v.* FROM p, (VALUES {', '.join([row] * n)}) AS v ({columns})) "
            f"SELECT {pk} FROM p")


def insert_with_children(parent: models.Model, children: Sequence[models.Model], *, fk: str) -> None:
    """INSERT ``parent`` (it gets its primary key) and ``children``, whose foreign key ``fk`` is set to
    it, all or nothing. On PostgreSQL one statement (a data-modifying CTE: one round trip, atomic by
    itself); elsewhere two inserts in a transaction."""
    if not children:
        insert([parent], returning_pk=True)
        return
    child = type(children[0])
    fk_field, fields = _child_fields(child, fk)
    if connection.vendor == "postgresql":
        sql = _with_children_sql(type(parent), child, fk, connection.vendor, len(children))
        with _statement(), prepared_cursor() as cursor:
            cursor.execute(sql, _values([parent], _fields(type(parent))) + _values(children, fields))
            _saved(parent, cursor.fetchone()[0])
    else:
        with transaction.atomic():
            _execute_insert([parent], returning_pk=True)
            for c in children:
                setattr(c, fk_field.attname, parent.pk)
            _execute_insert(children, returning_pk=False)
    for c in children:
        setattr(c, fk_field.attname, parent.pk)
