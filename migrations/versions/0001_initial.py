"""The registry's first schema: node, stream, regional_origin, pull (DESIGN §4).

Revision ID: 0001
Revises:
Create Date: 2026-11-21

Times are ``timestamptz`` on PostgreSQL; on SQLite the same DDL gives a DATETIME
column holding fixed-width UTC text (``cluster.schema.RegistryTime``).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time(name: str) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "node",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("node_group", sa.Text(), nullable=False),
        sa.Column("public_url", sa.Text(), nullable=False),
        sa.Column("internal_url", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("cores", sa.Integer(), nullable=False),
        sa.Column("max_viewers", sa.Integer(), nullable=False),
        sa.Column("max_bitrate_kbps", sa.Integer(), nullable=False),
        sa.Column("cpu", sa.Float(), nullable=False),
        sa.Column("memory", sa.Float(), nullable=False),
        sa.Column("viewers", sa.Integer(), nullable=False),
        sa.Column("publishers", sa.Integer(), nullable=False),
        sa.Column("pulls", sa.Integer(), nullable=False),
        sa.Column("bitrate_in_kbps", sa.Integer(), nullable=False),
        sa.Column("bitrate_out_kbps", sa.Integer(), nullable=False),
        _time("heartbeat_at"),
        _time("registered_at"),
        sa.CheckConstraint("state IN ('serving', 'draining')", name="node_state"),
    )
    op.create_index("node_heartbeat_at", "node", ["heartbeat_at"])

    op.create_table(
        "stream",
        sa.Column("id", sa.Text(), primary_key=True),
        sa.Column("app", sa.Text(), nullable=False),
        sa.Column("origin_node", sa.Text(), nullable=False),
        sa.Column("origin_group", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("codecs", sa.Text(), nullable=False),
        _time("lease_expires_at"),
        _time("updated_at"),
        sa.CheckConstraint("state IN ('live', 'ended', 'orphaned')", name="stream_state"),
    )

    op.create_table(
        "regional_origin",
        sa.Column("stream_id", sa.Text(), primary_key=True),
        sa.Column("node_group", sa.Text(), primary_key=True),
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        _time("lease_expires_at"),
    )

    op.create_table(
        "pull",
        sa.Column("stream_id", sa.Text(), primary_key=True),
        sa.Column("downstream", sa.Text(), primary_key=True),
        sa.Column("upstream", sa.Text(), nullable=False),
        _time("since"),
    )
    op.create_index("pull_upstream", "pull", ["upstream"])


def downgrade() -> None:
    op.drop_table("pull")
    op.drop_table("regional_origin")
    op.drop_table("stream")
    op.drop_table("node")
