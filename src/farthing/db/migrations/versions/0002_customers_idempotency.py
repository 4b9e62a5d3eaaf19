"""stripe customers and idempotency keys

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('stripe_idempotency_keys',
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('mode', sa.String(length=4), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('claim', sa.String(length=32), nullable=False),
    sa.Column('fingerprint', sa.String(length=64), nullable=False),
    sa.Column('created_at_ns', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Integer(), nullable=True),
    sa.Column('body', sa.Text(), nullable=True),
    sa.PrimaryKeyConstraint('tenant_id', 'mode', 'key', name=op.f('pk_stripe_idempotency_keys'))
    )
    op.create_table('stripe_customers',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('mode', sa.String(length=4), nullable=False),
    sa.Column('created', sa.BigInteger(), nullable=False),
    sa.Column('email', sa.String(length=512), nullable=True),
    sa.Column('name', sa.String(length=256), nullable=True),
    sa.Column('description', sa.String(length=500), nullable=True),
    sa.Column('phone', sa.String(length=40), nullable=True),
    sa.Column('metadata', sa.Text(), nullable=False),
    sa.Column('deleted', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.CheckConstraint("mode IN ('test', 'live')", name=op.f('ck_stripe_customers_mode')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_stripe_customers_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_stripe_customers')),
    sa.UniqueConstraint('id', name=op.f('uq_stripe_customers_id'))
    )
    with op.batch_alter_table('stripe_customers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stripe_customers_tenant_id_mode_seq'), ['tenant_id', 'mode', 'seq'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('stripe_customers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stripe_customers_tenant_id_mode_seq'))
    op.drop_table('stripe_customers')
    op.drop_table('stripe_idempotency_keys')
