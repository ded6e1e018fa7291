"""SQLAlchemy store: tables, engine and sessions, the guarded write path, queries, migrations."""
