"""abandon deliveries of disabled endpoints

Revision ID: 0015
Revises: 0014

The worker now claims deliveries of enabled endpoints only, and disabling or deleting an endpoint
abandons its queued deliveries. Deliveries queued for endpoints disabled before this version
would otherwise wait for ever (and keep `farthing prune` from their events): they are abandoned
as they would be now. Data only; the downgrade leaves them abandoned.
"""

from __future__ import annotations

from alembic import op


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "UPDATE stripe_webhook_deliveries SET status = 'abandoned' "
        "WHERE status = 'pending' AND endpoint_id IN ("
        "SELECT id FROM stripe_webhook_endpoints WHERE status <> 'enabled' OR deleted)"
    )


def downgrade() -> None:
    pass  # Which were abandoned by this revision is not recorded; they stay abandoned.
