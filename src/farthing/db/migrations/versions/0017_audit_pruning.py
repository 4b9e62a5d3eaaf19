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
    # Prune records are found by this index (only they are in it): prune checks the newest.
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index('ix_audit_log_prunes', ['seq'], unique=False, postgresql_where=sa.text("action = 'audit prune'"), sqlite_where=sa.text("action = 'audit prune'"))
    if op.get_bind().dialect.name == "postgresql":
        _upgrade_postgresql()
    else:
        _upgrade_sqlite()


def _upgrade_postgresql() -> None:
    op.execute(
        "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger "
        "LANGUAGE plpgsql AS $$ BEGIN "
        "IF TG_OP = 'DELETE' THEN "
        "IF OLD.seq <= (SELECT through_seq FROM audit_pruned WHERE id = 1) THEN "
        "RETURN OLD; END IF; END IF; "
        "RAISE EXCEPTION 'audit_log is append-only'; END $$"
    )
    # The start only moves forward, and its row stays.
    op.execute(
        "CREATE FUNCTION audit_pruned_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN IF TG_OP = 'UPDATE' THEN IF NEW.through_seq >= OLD.through_seq THEN "
        "RETURN NEW; END IF; END IF; "
        "RAISE EXCEPTION 'audit_pruned only moves forward'; END $$"
    )
    op.execute(
        "CREATE TRIGGER audit_pruned_forward_only BEFORE UPDATE OR DELETE ON audit_pruned "
        "FOR EACH ROW EXECUTE FUNCTION audit_pruned_forward_only()"
    )
    op.execute(
        "CREATE TRIGGER audit_pruned_no_truncate BEFORE TRUNCATE ON audit_pruned "
        "FOR EACH STATEMENT EXECUTE FUNCTION audit_pruned_forward_only()"
    )


def _upgrade_sqlite() -> None:
    op.execute("DROP TRIGGER audit_log_no_delete")
    # COALESCE: with the audit_pruned row gone, nothing may be deleted.
    op.execute(
        "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
        "WHEN OLD.seq > COALESCE((SELECT through_seq FROM audit_pruned WHERE id = 1), 0) "
        "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
    )
    op.execute(
        "CREATE TRIGGER audit_pruned_no_delete BEFORE DELETE ON audit_pruned "
        "BEGIN SELECT RAISE(ABORT, 'audit_pruned only moves forward'); END"
    )
    op.execute(
        "CREATE TRIGGER audit_pruned_forward_only BEFORE UPDATE ON audit_pruned "
        "WHEN NEW.through_seq < OLD.through_seq "
        "BEGIN SELECT RAISE(ABORT, 'audit_pruned only moves forward'); END"
    )


def downgrade() -> None:
    # The code before this revision verifies from the genesis only: a pruned trail would never
    # verify again.
    through = op.get_bind().execute(sa.text("SELECT through_seq FROM audit_pruned")).scalar()
    if through:
        raise RuntimeError(f"audit records 1 to {through} were pruned: cannot downgrade")
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_log_prunes')
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER audit_pruned_no_truncate ON audit_pruned")
        op.execute("DROP TRIGGER audit_pruned_forward_only ON audit_pruned")
        op.execute("DROP FUNCTION audit_pruned_forward_only()")
        op.execute(
            "CREATE OR REPLACE FUNCTION audit_log_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$"
        )
    else:
        op.execute("DROP TRIGGER audit_pruned_forward_only")
        op.execute("DROP TRIGGER audit_pruned_no_delete")
        op.execute("DROP TRIGGER audit_log_no_delete")
        op.execute(
            "CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log "
            "BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END"
        )
    op.drop_table('audit_pruned')
