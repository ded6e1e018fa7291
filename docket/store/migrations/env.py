"""Alembic environment. The caller normally hands over a connection (docket.store.migrate);
`alembic -x url=...` from the command line works too."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from docket.store.tables import Base

config = context.config
target_metadata = Base.metadata


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_with(connection)
else:
    from docket.store.engine import make_engine

    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")
    engine = make_engine(url or "")
    with engine.begin() as conn:
        run_with(conn)
    engine.dispose()
