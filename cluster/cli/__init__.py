"""The ``tierstream`` command: the node, migrations and the client commands."""

from cluster.cli.main import main

__all__ = ["main"]
