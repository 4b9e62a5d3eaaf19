"""ledger owner seals

Revision ID: 0016
Revises: 0015

Each ledger row gets ``owner_mac``, an HMAC of its id, account, mode and purpose under the
journal key, which `farthing verify` checks: before it, someone who could write to the database
could hand a tenant's live ledger to its test mode (or another account) and verify passed.
Existing ledgers are sealed here, so a database holding any needs the journal key
(FARTHING_JOURNAL_KEY or its key file, as `farthing init` provides); an empty one does not. The
key must be the one the journal was written with (checked on its newest entry): seals made with
another key would never verify.
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
    _check_key_against_the_journal(connection, key)
    for ledger_id, tenant_id, mode, purpose in rows:
        mac = owner_mac(key, ledger_id=ledger_id, tenant_id=tenant_id, mode=mode, purpose=purpose)
        connection.execute(
            sa.text("UPDATE ledgers SET owner_mac = :mac WHERE id = :id"),
            {"mac": mac, "id": ledger_id},
        )


def _check_key_against_the_journal(connection: sa.Connection, key: bytes) -> None:
    from farthing._errors import ConfigurationError  # noqa: PLC0415
    from farthing.ledger import GENESIS_MAC, entry_mac  # noqa: PLC0415

    newest = connection.execute(
        sa.text(
            "SELECT seq, ts, accounts_count, limit_changes_count, transfers_count, failed_count,"
            " digest, mac FROM ledger_journal ORDER BY seq DESC LIMIT 2"
        )
    ).all()
    if not newest:
        return
    entry = newest[0]
    previous_mac = newest[1].mac if len(newest) == 2 else GENESIS_MAC  # noqa: PLR2004
    counts = (
        entry.accounts_count,
        entry.limit_changes_count,
        entry.transfers_count,
        entry.failed_count,
    )
    expected = entry_mac(
        key,
        previous_mac=previous_mac,
        seq=entry.seq,
        timestamp_ns=entry.ts,
        counts=counts,
        digest=entry.digest,
    )
    if expected != entry.mac:
        msg = (
            "the journal key does not match this database's journal (its newest entry does not"
            " verify): set FARTHING_JOURNAL_KEY or FARTHING_JOURNAL_KEY_FILE to the key it was"
            " written with"
        )
        raise ConfigurationError(msg)


def downgrade() -> None:
    with op.batch_alter_table('ledgers', schema=None) as batch_op:
        batch_op.drop_column('owner_mac')
