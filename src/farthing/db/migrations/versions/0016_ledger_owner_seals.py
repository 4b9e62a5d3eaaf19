"""ledger owner seals

Revision ID: 0016
Revises: 0015

Each ledger row gets ``owner_mac``, an HMAC of its id, account, mode and purpose under the
journal key, which `farthing verify` checks: before it, someone who could write to the database
could hand a tenant's live ledger to its test mode (or another account) and verify passed.
Existing ledgers are sealed here, so a database holding any needs the journal key
(FARTHING_JOURNAL_KEY or its key file, as `farthing init` provides); an empty one does not.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('ledgers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner_mac', sa.String(length=64), nullable=True))
    _seal_existing(op.get_bind())
    with op.batch_alter_table('ledgers', schema=None) as batch_op:
        batch_op.alter_column('owner_mac', existing_type=sa.String(length=64), nullable=False)


def _seal_existing(connection: sa.Connection) -> None:
    from farthing.config import load_journal_key  # noqa: PLC0415 - only when ledgers exist
    from farthing.ledger import owner_mac  # noqa: PLC0415

    rows = connection.execute(sa.text("SELECT id, tenant_id, mode, purpose FROM ledgers")).all()
    if not rows:
        return
    key = load_journal_key()
    for ledger_id, tenant_id, mode, purpose in rows:
        mac = owner_mac(key, ledger_id=ledger_id, tenant_id=tenant_id, mode=mode, purpose=purpose)
        connection.execute(
            sa.text("UPDATE ledgers SET owner_mac = :mac WHERE id = :id"),
            {"mac": mac, "id": ledger_id},
        )


def downgrade() -> None:
    with op.batch_alter_table('ledgers', schema=None) as batch_op:
        batch_op.drop_column('owner_mac')
