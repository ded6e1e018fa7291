"""Temporal activities: every side effect, each idempotent."""
