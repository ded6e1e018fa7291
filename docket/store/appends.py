"""Rows that are only ever appended (audit, outbox, stock ledger, applied moves): buffered during
the move and written just before commit, one INSERT per table, without the ORM's unit of work
(which cost more than the rest of a move put together)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, event, insert
from sqlalchemy.orm import DeclarativeBase, Session

_KEY = "docket-appends"
WRITTEN = "docket-written"
_KEEP_IDS: dict[str, str] = {}


def keep_ids(model: type[DeclarativeBase], by: str) -> None:
    """Have the ids of this table's appended rows kept (see `written`): costs a RETURNING. `by`
    names a unique column that tells the rows apart: the rows go out in one statement, and the
    database need not return their ids in the order they were given."""
    _KEEP_IDS[model.__tablename__] = by


def written(session: Session, model: type[DeclarativeBase]) -> list[tuple[int, dict[str, Any]]]:
    """(id, values) of the rows of `model` this session's last commit appended."""
    return session.info.get(WRITTEN, {}).get(model.__tablename__, [])  # type: ignore[no-any-return]


def append(session: Session, model: type[DeclarativeBase], **values: Any) -> None:
    table: Table = model.__table__  # type: ignore[assignment]
    session.info.setdefault(_KEY, {}).setdefault(table, []).append(values)


@event.listens_for(Session, "before_commit")
def _write_appends(session: Session) -> None:
    pending: dict[Table, list[dict[str, Any]]] = session.info.pop(_KEY, {})
    kept = session.info[WRITTEN] = {}
    if not pending:
        return
    connection = session.connection()  # Core: the session's bookkeeping is not needed here
    for table, rows in pending.items():
        if table.name not in _KEEP_IDS:
            connection.execute(insert(table), rows)
            continue
        [key], by = table.primary_key.columns, _KEEP_IDS[table.name]
        ids = {tag: id_ for tag, id_ in connection.execute(insert(table).returning(table.c[by], key), rows)}
        kept[table.name] = [(ids[row[by]], row) for row in rows]


@event.listens_for(Session, "after_rollback")
def _forget_appends(session: Session) -> None:
    session.info.pop(_KEY, None)
