"""``python -m cluster`` is the ``tierstream`` command."""

from cluster.cli import main

main()
