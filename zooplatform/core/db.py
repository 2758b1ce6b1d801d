"""Plain-SQL inserts for the request paths that run hundreds of times a second.

``Model.save`` and ``QuerySet.bulk_create`` compile their INSERT anew on every call; under the volunteer
load benchmark that compilation, not the database, was most of what storing a classification cost. Here
the statement is built once per model, row count and conflict clause, and the values still go through
each field's own ``pre_save`` and ``get_db_prep_save`` (``auto_now_add`` times, JSON adaptation), so the
rows are exactly what the ORM would write. Errors come out as Django's (``IntegrityError``), as from the ORM.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

from django.db import connection, models
from django.db.models.fields import AutoFieldMixin


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


def insert(objs: Sequence[models.Model], *, returning_pk: bool = False,
           unique_fields: Sequence[str] = (), update_fields: Sequence[str] = ()) -> None:
    """INSERT ``objs`` (instances of one model) in one statement; with ``returning_pk`` each gets its
    primary key. With ``unique_fields`` and ``update_fields``, an existing row with the same unique
    values is updated instead (``ON CONFLICT ... DO UPDATE``, as ``bulk_create(update_conflicts=True)``).
    No signals are sent and no validation is run (call ``full_clean`` first where it matters)."""
    if not objs:
        return
    model = type(objs[0])
    conflict = (tuple(unique_fields), tuple(update_fields)) if unique_fields else None
    fields = _fields(model)
    params = [f.get_db_prep_save(f.pre_save(obj, True), connection) for obj in objs for f in fields]
    sql = _insert_sql(model, connection.vendor, len(objs), returning_pk, conflict)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if returning_pk:
            for obj, (pk,) in zip(objs, cursor.fetchall()):
                obj.pk = pk
                obj._state.adding, obj._state.db = False, connection.alias
