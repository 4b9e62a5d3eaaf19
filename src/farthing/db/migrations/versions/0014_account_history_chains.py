"""account history as chains with marks, instead of per-account indexes on every transfer

Each transfer links to the previous transfer of its debit and of its credit account; the account
holds its newest transfer and a count; every 64th transfer of an account is a row of
ledger_history_marks. Existing transfers are linked here, oldest first, in bounded chunks.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

# HISTORY_MARK_EVERY as of this revision (a migration must not follow later code).
_MARK_EVERY = 64
_CHUNK_ROWS = 10_000


def upgrade() -> None:
    with op.batch_alter_table('ledger_accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_transfer_ts', sa.BigInteger(), nullable=True))
        batch_op.add_column(
            sa.Column('transfers_count', sa.BigInteger(), server_default='0', nullable=False)
        )
    with op.batch_alter_table('ledger_transfers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('dr_previous_ts', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('cr_previous_ts', sa.BigInteger(), nullable=True))
    op.create_table(
        'ledger_history_marks',
        sa.Column('account_pk', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column('ts', sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint('account_pk', 'ts', name=op.f('pk_ledger_history_marks')),
        sqlite_with_rowid=False,
    )
    _link_existing_transfers(op.get_bind())
    sqlite = op.get_bind().dialect.name == "sqlite"
    for side in ("debit_pk", "credit_pk"):
        name = f"ix_ledger_transfers_{side}" if sqlite else f"ix_ledger_transfers_{side}_ts"
        op.drop_index(name, table_name="ledger_transfers")


def _link_existing_transfers(bind: sa.Connection) -> None:
    chains: dict[int, list[int]] = {}  # account pk -> [newest ts, count]
    after = -1
    while True:
        rows = bind.execute(
            sa.text(
                "SELECT ts, debit_pk, credit_pk FROM ledger_transfers WHERE ts > :after "
                "ORDER BY ts LIMIT :limit"
            ),
            {"after": after, "limit": _CHUNK_ROWS},
        ).all()
        if not rows:
            break
        links = []
        marks = []
        for ts, debit_pk, credit_pk in rows:
            previous = []
            for pk in (debit_pk, credit_pk):
                chain = chains.setdefault(pk, [None, 0])
                previous.append(chain[0])
                chain[0] = ts
                chain[1] += 1
                if chain[1] % _MARK_EVERY == 0:
                    marks.append({"pk": pk, "ts": ts})
            links.append({"dr": previous[0], "cr": previous[1], "ts": ts})
        bind.execute(
            sa.text(
                "UPDATE ledger_transfers SET dr_previous_ts = :dr, cr_previous_ts = :cr "
                "WHERE ts = :ts"
            ),
            links,
        )
        if marks:
            bind.execute(
                sa.text("INSERT INTO ledger_history_marks (account_pk, ts) VALUES (:pk, :ts)"),
                marks,
            )
        after = rows[-1][0]
    heads = [{"last": chain[0], "count": chain[1], "pk": pk} for pk, chain in chains.items()]
    for start in range(0, len(heads), _CHUNK_ROWS):
        bind.execute(
            sa.text(
                "UPDATE ledger_accounts SET last_transfer_ts = :last, transfers_count = :count "
                "WHERE pk = :pk"
            ),
            heads[start : start + _CHUNK_ROWS],
        )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for side in ("debit_pk", "credit_pk"):
        if sqlite:
            op.create_index(f"ix_ledger_transfers_{side}", "ledger_transfers", [side])
        else:
            op.create_index(f"ix_ledger_transfers_{side}_ts", "ledger_transfers", [side, "ts"])
    op.drop_table('ledger_history_marks')
    with op.batch_alter_table('ledger_transfers', schema=None) as batch_op:
        batch_op.drop_column('cr_previous_ts')
        batch_op.drop_column('dr_previous_ts')
    with op.batch_alter_table('ledger_accounts', schema=None) as batch_op:
        batch_op.drop_column('transfers_count')
        batch_op.drop_column('last_transfer_ts')
