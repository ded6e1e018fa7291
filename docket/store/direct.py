"""Statements run straight on the DBAPI cursor of a store connection: the write path of every
move, and the reads it shares with the views.

SQLAlchemy builds each statement once, from the declared tables, and compiles it once per
dialect. Its execution layers (a cache key per call, an execution context, a wrapped result) are
left out: on SQLite they cost several times the statement itself, and a move runs a dozen. Values
go in and come out through SQLAlchemy's own type processors, so a row written here reads back the
same through the ORM, and a row the ORM wrote reads back the same here.

A statement given to a `Tx` names its parameters with `bindparam`; constants in it (a state, an
operation) are bound when it is compiled. `in_()` of a list is not used here (it compiles to a
placeholder SQLAlchemy expands per call): a few constants are written `or_(a, b)`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, Executable
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.orm import Session

from docket.store.engine import BUSY_TIMEOUT_MS, serialised_writes, write_lock

_WAITING = contextvars.ContextVar("docket-store-waiting", default=True)


class WouldWait(Exception):
    """A write begun `without_waiting` found the store's write lock taken: nothing was done."""


@contextlib.contextmanager
def without_waiting() -> Iterator[None]:
    """Within this block a write transaction on SQLite does not wait for the write lock (held by
    another thread of this process, or by another process): it raises `WouldWait` before it has
    begun. PostgreSQL's writes are left as they are."""
    token = _WAITING.set(False)
    try:
        yield
    finally:
        _WAITING.reset(token)


class Prepared:
    """One statement compiled for one dialect: its SQL, and how to turn keyword values into the
    driver's parameters and the driver's rows into Python values."""

    def __init__(self, statement: Executable, dialect: Dialect):
        compiled = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        self.sql = compiled.string
        names = {name: bind for bind, name in compiled.bind_names.items()}
        order = compiled.positiontup if compiled.positiontup is not None else list(names)
        self.positional = compiled.positiontup is not None
        self.names = list(order)
        # Constants (a state, an operation) are processed once, here; the caller's values at
        # `required` places, each by its type's processor.
        self.constants: list[Any] = []
        self.required: list[tuple[int, str, Any]] = []
        for place, name in enumerate(order):
            bind = names[name]
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if bind.required or bind.callable is not None:
                self.constants.append(None)
                self.required.append((place, bind.key, process))
            else:
                self.constants.append(process(bind.value) if process else bind.value)
        self.columns = list(getattr(statement, "exported_columns", ()))
        self.dialect = dialect
        self._results: list[Any] | None = None

    def parameters(self, given: dict[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        values = self.constants.copy()
        for place, key, process in self.required:
            value = given[key]
            values[place] = value if process is None or value is None else process(value)
        if self.positional:
            return tuple(values)
        return dict(zip(self.names, values, strict=True))

    def rows(self, fetched: list[Any], description: Any) -> list[tuple[Any, ...]]:
        if self._results is None:  # the driver's column types are known once it has answered
            self._results = [
                column.type.dialect_impl(self.dialect).result_processor(self.dialect, described[1])
                for column, described in zip(self.columns, description, strict=True)
            ]
        processors = self._results
        if not any(processors):
            return [tuple(row) for row in fetched]
        return [
            tuple(v if p is None or v is None else p(v) for v, p in zip(row, processors, strict=True))
            for row in fetched
        ]


_PREPARED: dict[tuple[Executable, str], Prepared] = {}
# Statements are built once, at import: far fewer than this. More means one is built per call,
# and each would be compiled and kept for ever.
_AT_MOST = 1000


class Tx:
    """One transaction of the store, run on its DBAPI connection's cursor.

    `kept` holds what the transaction read once and may read again (the order's lines, its shop):
    moves change those same objects and write each change themselves. `append` buffers rows that
    are only ever added (audit, ledger, applied moves), written together before the commit."""

    def __init__(self, connection: Any, dialect: Dialect):
        self.connection = connection  # the driver's own (sqlite3, psycopg)
        self.dialect = dialect
        self.cursor = connection.cursor()
        self.kept: dict[Any, Any] = {}
        self._appends: dict[Executable, list[dict[str, Any]]] = {}

    @classmethod
    def of(cls, session: Session) -> Tx:
        """A Tx on a session's connection and transaction (for reads shared with the ORM's)."""
        connection = session.connection()
        return cls(connection.connection.driver_connection, connection.dialect)

    @property
    def postgres(self) -> bool:
        return self.dialect.name == "postgresql"

    def _prepared(self, statement: Executable) -> Prepared:
        key = (statement, self.dialect.name)
        prepared = _PREPARED.get(key)
        if prepared is None:
            if len(_PREPARED) >= _AT_MOST:
                raise RuntimeError("a statement given to Tx is built anew for each call: build it once")
            prepared = _PREPARED[key] = Prepared(statement, self.dialect)
        return prepared

    def _execute(self, sql: str, parameters: Any, many: bool = False) -> None:
        try:
            if many:
                self.cursor.executemany(sql, parameters)
            else:
                self.cursor.execute(sql, parameters)
        except self.dialect.loaded_dbapi.Error as error:
            raise _as_sqlalchemy_error(error, self.dialect, sql, parameters) from error

    def all(self, statement: Executable, **params: Any) -> list[tuple[Any, ...]]:
        prepared = self._prepared(statement)
        self._execute(prepared.sql, prepared.parameters(params))
        return prepared.rows(self.cursor.fetchall(), self.cursor.description)

    def first(self, statement: Executable, **params: Any) -> tuple[Any, ...] | None:
        found = self.all(statement, **params)
        return found[0] if found else None

    def scalar(self, statement: Executable, **params: Any) -> Any:
        found = self.first(statement, **params)
        return found[0] if found else None

    def run(self, statement: Executable, **params: Any) -> int:
        """A statement that returns no rows; how many rows it changed."""
        prepared = self._prepared(statement)
        self._execute(prepared.sql, prepared.parameters(params))
        return int(self.cursor.rowcount)

    def run_many(self, statement: Executable, rows: list[dict[str, Any]]) -> None:
        if rows:
            prepared = self._prepared(statement)
            self._execute(prepared.sql, [prepared.parameters(row) for row in rows], many=True)

    def append(self, statement: Executable, **values: Any) -> None:
        """A row for an INSERT that returns nothing, written with the others of its statement
        just before the commit (`flush`)."""
        self._appends.setdefault(statement, []).append(values)

    def flush(self) -> None:
        pending, self._appends = self._appends, {}
        for statement, rows in pending.items():
            self.run_many(statement, rows)


def _as_sqlalchemy_error(error: Exception, dialect: Dialect, sql: str, parameters: Any) -> StatementError:
    """The driver's error as SQLAlchemy would have raised it (IntegrityError, OperationalError ...):
    what the rest of docket catches."""
    return DBAPIError.instance(sql, parameters, error, dialect.loaded_dbapi.Error, dialect=dialect)


@contextlib.contextmanager
def _transaction(engine: Engine, begin: str | None) -> Iterator[Tx]:
    """A connection from the engine's pool, one transaction on it, back to the pool. SQLite's
    connections leave transactions to docket (store.engine): `begin` opens one; PostgreSQL's
    driver opens one at the first statement."""
    pooled = engine.raw_connection()
    try:
        tx = Tx(pooled.driver_connection, engine.dialect)
        try:
            if begin is not None:
                tx.cursor.execute(begin)
            yield tx
            tx.flush()
            tx.connection.commit()
        except BaseException:
            tx.connection.rollback()
            raise
    except engine.dialect.loaded_dbapi.Error as error:  # BEGIN or COMMIT itself
        raise _as_sqlalchemy_error(error, engine.dialect, "BEGIN/COMMIT", ()) from error
    finally:
        pooled.close()


@contextlib.contextmanager
def writing(engine: Engine) -> Iterator[Tx]:
    """A write transaction, committed when the block ends (rolled back whole if it raises). On
    SQLite, one writer of this process at a time, holding the database's write lock from the
    start (BEGIN IMMEDIATE: see store.engine)."""
    if _sqlite(engine) and not _WAITING.get():
        with _at_once(engine) as tx:
            yield tx
        return
    with (
        serialised_writes(engine),
        _transaction(engine, "BEGIN IMMEDIATE" if _sqlite(engine) else None) as tx,
    ):
        yield tx


@contextlib.contextmanager
def _at_once(engine: Engine) -> Iterator[Tx]:
    """`writing` on SQLite when the write lock is free now, else `WouldWait`: the process's own
    writers' lock taken without blocking, and SQLite's taken with no busy time-out (restored once
    the transaction has begun)."""
    lock = write_lock(engine)
    if not lock.acquire(blocking=False):
        raise WouldWait("another thread of this process is writing")
    try:
        with _transaction(engine, None) as tx:
            tx.cursor.execute("PRAGMA busy_timeout=0")
            try:
                tx.cursor.execute("BEGIN IMMEDIATE")
            except engine.dialect.loaded_dbapi.OperationalError as error:
                raise WouldWait(f"another process is writing: {error}") from None
            finally:
                tx.cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            yield tx
    finally:
        lock.release()


def reading(engine: Engine) -> contextlib.AbstractContextManager[Tx]:
    """A read-only transaction: on SQLite it runs beside the writer (WAL)."""
    return _transaction(engine, "BEGIN" if _sqlite(engine) else None)


def _sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"
