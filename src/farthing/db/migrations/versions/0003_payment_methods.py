"""stripe payment methods (card vault)

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('stripe_payment_methods',
    sa.Column('seq', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('id', sa.String(length=40), nullable=False),
    sa.Column('tenant_id', sa.String(length=40), nullable=False),
    sa.Column('mode', sa.String(length=4), nullable=False),
    sa.Column('created', sa.BigInteger(), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('customer_id', sa.String(length=40), nullable=True),
    sa.Column('brand', sa.String(length=16), nullable=False),
    sa.Column('last4', sa.String(length=4), nullable=False),
    sa.Column('exp_month', sa.Integer(), nullable=False),
    sa.Column('exp_year', sa.Integer(), nullable=False),
    sa.Column('funding', sa.String(length=16), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=True),
    sa.Column('fingerprint', sa.String(length=16), nullable=False),
    sa.Column('billing_name', sa.String(length=256), nullable=True),
    sa.Column('billing_email', sa.String(length=512), nullable=True),
    sa.Column('metadata', sa.Text(), nullable=False),
    sa.Column('vault_key_id', sa.String(length=16), nullable=False),
    sa.Column('pan_sealed', sa.LargeBinary(), nullable=False),
    sa.CheckConstraint("mode IN ('test', 'live')", name=op.f('ck_stripe_payment_methods_mode')),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], name=op.f('fk_stripe_payment_methods_tenant_id_tenants')),
    sa.PrimaryKeyConstraint('seq', name=op.f('pk_stripe_payment_methods')),
    sa.UniqueConstraint('id', name=op.f('uq_stripe_payment_methods_id'))
    )
    with op.batch_alter_table('stripe_payment_methods', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_stripe_payment_methods_tenant_id_mode_seq'), ['tenant_id', 'mode', 'seq'], unique=False)
        batch_op.create_index(batch_op.f('ix_stripe_payment_methods_tenant_id_mode_customer_id_seq'), ['tenant_id', 'mode', 'customer_id', 'seq'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('stripe_payment_methods', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_stripe_payment_methods_tenant_id_mode_customer_id_seq'))
        batch_op.drop_index(batch_op.f('ix_stripe_payment_methods_tenant_id_mode_seq'))
    op.drop_table('stripe_payment_methods')
