"""SQLite: index an account's transfers by (debit_pk) and (credit_pk) alone

On SQLite ``ts`` is the rowid, which every index entry ends with already; PostgreSQL keeps
(debit_pk, ts) and (credit_pk, ts).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for side in ("debit_pk", "credit_pk"):
        op.create_index(f"ix_ledger_transfers_{side}", "ledger_transfers", [side])
        op.drop_index(f"ix_ledger_transfers_{side}_ts", table_name="ledger_transfers")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for side in ("debit_pk", "credit_pk"):
        op.create_index(f"ix_ledger_transfers_{side}_ts", "ledger_transfers", [side, "ts"])
        op.drop_index(f"ix_ledger_transfers_{side}", table_name="ledger_transfers")
