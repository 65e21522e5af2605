"""The registry's Alembic migrations; ``cluster.migrate`` applies them to head."""
