"""card gateways per shop, the callback inbox, payment tokens

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 12:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("gateway", sa.String(length=32), server_default="sandbox", nullable=False)
        )
        batch_op.add_column(sa.Column("gateway_secrets", sa.JSON(), server_default="{}", nullable=False))
        batch_op.add_column(sa.Column("callback_sources", sa.JSON(), server_default="[]", nullable=False))
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payment_token", sa.String(length=200), nullable=True))
    op.create_table(
        "payment_callbacks",
        sa.Column("callback_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("gateway", sa.String(length=32), nullable=False),
        sa.Column("event_id", sa.String(length=200), nullable=False),
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=True),
        sa.Column("source", sa.String(length=64), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("callback_id", name=op.f("pk_payment_callbacks")),
        sa.UniqueConstraint("gateway", "event_id", name=op.f("uq_payment_callbacks_gateway")),
    )
    with op.batch_alter_table("payment_callbacks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payment_callbacks_order_id"), ["order_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_payment_callbacks_processed_at"), ["processed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("payment_callbacks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_callbacks_processed_at"))
        batch_op.drop_index(batch_op.f("ix_payment_callbacks_order_id"))
    op.drop_table("payment_callbacks")
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_column("payment_token")
    with op.batch_alter_table("shops", schema=None) as batch_op:
        batch_op.drop_column("callback_sources")
        batch_op.drop_column("gateway_secrets")
        batch_op.drop_column("gateway")
