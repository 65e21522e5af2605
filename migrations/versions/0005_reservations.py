"""Room kept for clients routed to a node before they show up in its heartbeat.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

``reservation`` holds, per node, how many routed clients have not arrived yet
and when that count lapses; ``node.cpu_limit`` is the node's
``server.cpu_limit``, so other nodes can judge its room by CPU.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reservation",
        sa.Column("node_id", sa.Text(), primary_key=True),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("node") as batch:
        batch.add_column(sa.Column("cpu_limit", sa.Integer(), nullable=False, server_default="100"))


def downgrade() -> None:
    with op.batch_alter_table("node") as batch:
        batch.drop_column("cpu_limit")
    op.drop_table("reservation")
