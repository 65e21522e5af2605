"""The registry's append-only history of secondary-origin terms, for split-brain checks.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01

``secondary_origin_history`` gets one row each time a region's secondary origin of a
stream changes: a term begins (claimed, or taken over from a holder that stopped
answering), or ends (released, cleared by a restarted node, ended with its stream).
Renewals within a term add nothing; the lease a term last held is recorded by the
claim that follows it, from ``regional_origin.previous_lease_expires_at`` (the lease
the row held before its latest claim: ``RETURNING`` cannot read the row as it was).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "secondary_origin_history",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("stream_id", sa.Text(), nullable=False),
        sa.Column("node_group", sa.Text(), nullable=False),
        sa.Column("node_id", sa.Text(), nullable=False),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("change", sa.Text(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("previous_lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "change IN ('claimed', 'taken_over', 'released', 'cleared', 'ended')",
            name="secondary_origin_history_change",
        ),
    )
    op.create_index(
        "secondary_origin_history_slot",
        "secondary_origin_history",
        ["stream_id", "node_group", "id"],
    )
    with op.batch_alter_table("regional_origin") as batch:
        batch.add_column(
            sa.Column("previous_lease_expires_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("regional_origin") as batch:
        batch.drop_column("previous_lease_expires_at")
    op.drop_index("secondary_origin_history_slot", table_name="secondary_origin_history")
    op.drop_table("secondary_origin_history")
