"""The registry: the only code that speaks SQL.

PostgreSQL for a cluster, embedded SQLite for one machine.

Everything above talks to ``Registry``; the tables, rows-to-records and
transactions stay in here.
"""

from cluster.registry.registry import Registry

__all__ = ["Registry"]
