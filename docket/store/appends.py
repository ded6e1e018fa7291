"""Rows that are only ever appended (audit, outbox, stock ledger, applied moves): buffered during
the move and written just before commit, one INSERT per table, without the ORM's unit of work
(which cost more than the rest of a move put together)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, event, insert
from sqlalchemy.orm import DeclarativeBase, Session

_KEY = "docket-appends"


def append(session: Session, model: type[DeclarativeBase], **values: Any) -> None:
    table: Table = model.__table__  # type: ignore[assignment]
    session.info.setdefault(_KEY, {}).setdefault(table, []).append(values)


@event.listens_for(Session, "before_commit")
def _write_appends(session: Session) -> None:
    pending: dict[Table, list[dict[str, Any]]] = session.info.pop(_KEY, {})
    for table, rows in pending.items():
        session.execute(insert(table), rows)


@event.listens_for(Session, "after_rollback")
def _forget_appends(session: Session) -> None:
    session.info.pop(_KEY, None)
