"""predictions: an index on (bulk_id, label, error), so that a bulk job's counts read the index only

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 18:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_predictions_bulk_label", "predictions", ["bulk_id", "label", "error"])


def downgrade() -> None:
    op.drop_index("ix_predictions_bulk_label", table_name="predictions")
