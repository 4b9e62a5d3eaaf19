"""audit pruning

Revision ID: 0017
Revises: 0016

``farthing audit prune`` deletes audit records past their retention. ``audit_pruned`` holds where
the trail now starts (the last pruned seq and its MAC), and the append-only guard lets records up
to that seq be deleted, no others; updates and TRUNCATE stay refused. Verification goes on from
that pair only if a chained prune record names it, so whoever can write to the database still
cannot delete records undetected.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None

_GENESIS_MAC = "0" * 64


def upgrade() -> None:
    op.create_table('audit_pruned',
    sa.Column('id', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('through_seq', sa.BigInteger(), nullable=False),
    sa.Column('mac', sa.String(length=64), nullable=False),
    sa.CheckConstraint('id = 1', name=op.f('ck_audit_pruned_single_row')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_pruned'))
    )
    op.execute(f"INSERT INTO audit_pruned (id, through_seq, mac) VALUES (1, 0, '{_GENESIS_MAC}')")
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN "
            "IF TG_OP = 'DELETE' THEN "
            "IF OLD.seq <= (SELECT through_seq FROM audit_pruned WHERE id = 1) THEN "
            "RETURN OLD; END IF; END IF; "
            "RAISE EXCEPTION 'audit_log is append-only'; END $$"
        )
    else:
        op.execute("DROP TRIGGER audit_log_no_delete")
        op.execute(
            "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
            "WHEN OLD.seq > (SELECT through_seq FROM audit_pruned WHERE id = 1) "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$"
        )
    else:
        op.execute("DROP TRIGGER audit_log_no_delete")
        op.execute(
            "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )
    op.drop_table('audit_pruned')
