"""A node's reservations move onto its own row, next to the players they become.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01

A heartbeat turns arrivals from reservations into players, and a router checks
players + reservations against the node's limit. With the two in different
rows, PostgreSQL's re-check of a router's statement that waited for a
heartbeat saw the heartbeat's new reservations but its own snapshot's old
players; on one row, every statement sees both as one. ``node.pending`` is the
count of clients routed to the node that have not arrived, lapsing at
``node.pending_until``; the ``reservation`` table goes (reservations are
short-lived: they are not carried over).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("node") as batch:
        batch.add_column(sa.Column("pending", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("pending_until", sa.DateTime(timezone=True), nullable=True))
    op.drop_table("reservation")


def downgrade() -> None:
    op.create_table(
        "reservation",
        sa.Column("node_id", sa.Text(), primary_key=True),
        sa.Column("pending", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    with op.batch_alter_table("node") as batch:
        batch.drop_column("pending_until")
        batch.drop_column("pending")
