"""Pure code: lifecycles, schemas and domain rules. No I/O, no temporalio, no SQLAlchemy."""
