"""The registry's Alembic migrations; ``cluster.registry.migrate`` applies them to head."""
