"""Temporal workflows: orchestration only; no I/O, no SQLAlchemy, no clock but the workflow's."""
