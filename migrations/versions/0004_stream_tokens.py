"""One-time stream tokens (Ant Media's ``/broadcasts/{id}/token``), shared by every node.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

A token is created by one node's REST call and may be spent on any node of any
region, once: the registry holds it, and spending it is one ``DELETE …
RETURNING`` that only one node can win. Expired tokens are deleted when new
ones are made.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stream_token",
        sa.Column("token", sa.Text(), primary_key=True),
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("app", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("type IN ('publish', 'play')", name="stream_token_type"),
    )
    op.create_index("stream_token_expires_at", "stream_token", ["expires_at"])


def downgrade() -> None:
    op.drop_index("stream_token_expires_at", "stream_token")
    op.drop_table("stream_token")
