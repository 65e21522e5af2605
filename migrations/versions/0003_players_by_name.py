"""Columns say "players", the project's one word for people watching (they said "viewers").

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Only names change: ``node.max_viewers`` → ``max_players``, ``node.viewers`` →
``players``, ``stream.origin_viewers`` → ``origin_players``, ``pull.viewers`` →
``players``. The ``regional_origin`` table keeps its name (it holds secondary
origins; see ``cluster.registry.schema``).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RENAMES = {
    "node": (("max_viewers", "max_players"), ("viewers", "players")),
    "stream": (("origin_viewers", "origin_players"),),
    "pull": (("viewers", "players"),),
}


def upgrade() -> None:
    for table, columns in RENAMES.items():
        with op.batch_alter_table(table) as batch:
            for old, new in columns:
                batch.alter_column(old, new_column_name=new)


def downgrade() -> None:
    for table, columns in RENAMES.items():
        with op.batch_alter_table(table) as batch:
            for old, new in columns:
                batch.alter_column(new, new_column_name=old)
