"""Players per node for each stream: the main origin's on ``stream``, each puller's on ``pull``.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21

The topology endpoint and Ant Media's broadcast view count a stream's players
cluster-wide; each carrier writes its own count with the statement it already
runs every heartbeat (lease renewal or pull record).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("stream") as batch:
        batch.add_column(
            sa.Column("origin_viewers", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("pull") as batch:
        batch.add_column(sa.Column("viewers", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("pull") as batch:
        batch.drop_column("viewers")
    with op.batch_alter_table("stream") as batch:
        batch.drop_column("origin_viewers")
