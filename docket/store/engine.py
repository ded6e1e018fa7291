"""Engine and session factory. The store is synchronous: each activity runs its one transaction in
a worker thread, start to finish, without returning to an event loop between statements (which is
what kept SQLite's single write lock held for hundreds of milliseconds under load).

SQLite runs every write transaction as BEGIN IMMEDIATE so that a read followed by a write (reserve
what is available) is serialised, as SELECT ... FOR UPDATE does on PostgreSQL. Writers of one process
queue on a lock before they begin: waiting in SQLite's busy handler instead (sleeps of up to 100 ms
between tries) leaves the database idle between writers and cut throughput by half. Reads begin a
plain deferred transaction and run beside the writer (WAL)."""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

SessionFactory = sessionmaker[Session]
READ_ONLY = "docket_read_only"
# How long a SQLite connection waits for another's write lock before it gives up.
BUSY_TIMEOUT_MS = 60_000
_WRITE_LOCKS: WeakKeyDictionary[Engine, threading.Lock] = WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def normalise_url(url: str) -> str:
    """Accept the plain PostgreSQL scheme and name the driver docket ships with."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60, "check_same_thread": False}, **kwargs)

        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql(
                "BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE"
            )

        return engine
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def make_session_factory(engine: Engine) -> SessionFactory:
    return sessionmaker(engine, expire_on_commit=False)


def engine_of(sessions: SessionFactory) -> Engine:
    return sessions.kw["bind"]  # type: ignore[no-any-return]


def serialised_writes(engine: Engine) -> AbstractContextManager[Any]:
    """Hold while writing: on SQLite, one writer of this process at a time; elsewhere nothing."""
    if engine.dialect.name != "sqlite":
        return nullcontext()
    return write_lock(engine)


def write_lock(engine: Engine) -> threading.Lock:
    """The lock this process's writers to a SQLite store take in turn."""
    with _LOCKS_LOCK:
        return _WRITE_LOCKS.setdefault(engine, threading.Lock())


def read_session(sessions: SessionFactory) -> Session:
    """A session for reading only: on SQLite it does not take the write lock."""
    session = sessions()
    session.connection(execution_options={READ_ONLY: True})
    return session
