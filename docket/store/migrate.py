"""Apply the Alembic migrations: the only way docket's schema is ever created or changed. Every
entry point but `docket db upgrade`, `docket dev` and `docket demo` works only on a store already
at this docket's revision (`require_current`), and says how to get there when it is not."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

from docket.models.errors import StoreNotReady

MIGRATIONS = Path(__file__).parent / "migrations"
# Revision ids are the migration files' number prefixes ("0004_gateways_and_callbacks.py" is 0004).
REVISIONS = tuple(sorted(p.name.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*_*.py")))
HEAD = REVISIONS[-1]
UPGRADE = "apply the migrations with `docket db upgrade`"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if url:
        config.set_main_option("sqlalchemy.url", url)
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def require_current(engine: Engine) -> None:
    """Refuse a store that is not at this docket's schema revision, before anything reads or
    writes it: a clear line instead of a failed statement halfway through a command."""
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(url.database).exists():  # type: ignore[arg-type]  # connecting would create it empty
            raise StoreNotReady(f"no docket store at {url.database}: create it with `docket db upgrade`")
    where = url.render_as_string(hide_password=True)
    try:
        found = current_revision(engine)
    except OperationalError as error:  # refused, unknown host, bad password, no such database
        raise cannot_reach(engine, error) from None
    if found == HEAD:
        return
    if found is None:
        raise StoreNotReady(f"the database {where} has no docket schema: {UPGRADE}")
    if found in REVISIONS:
        raise StoreNotReady(
            f"the database {where} is at schema revision {found}, this docket needs {HEAD}: {UPGRADE}"
        )
    raise StoreNotReady(
        f"the database {where} is at schema revision {found}, which this docket does not know"
        f" (its newest is {HEAD}): it was migrated by a newer docket; run that one"
    )


def cannot_reach(engine: Engine, error: OperationalError) -> StoreNotReady:
    where = engine.url.render_as_string(hide_password=True)
    return StoreNotReady(f"cannot reach the database {where}: {unreachable(error)}")


def unreachable(error: OperationalError) -> str:
    """The driver's own words, first line: 'connection refused', 'database "x" does not exist'."""
    said = str(error.orig).strip().splitlines()
    return said[0] if said else type(error.orig).__name__
