"""payment transactions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 12:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "payment_transactions",
        sa.Column("transaction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("order_id", sa.String(length=64), nullable=False),
        sa.Column("delivery_no", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gateway", sa.String(length=32), nullable=False),
        sa.Column(
            "operation",
            sa.Enum(
                "authorize",
                "reverse_authorization",
                "capture",
                "authorize_capture",
                "void_capture",
                "refund",
                "external_refund",
                name="operation",
                native_enum=False,
                length=32,
            ),
            nullable=False,
        ),
        sa.Column("amount", sa.Numeric(precision=14, scale=2), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column(
            "result",
            sa.Enum(
                "ok", "processing", "failed", "manual_required", name="result", native_enum=False, length=32
            ),
            nullable=False,
        ),
        sa.Column("settled", sa.Boolean(), nullable=False),
        sa.Column("reference", sa.String(length=200), nullable=True),
        sa.Column("operator_id", sa.String(length=64), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.order_id"],
            name=op.f("fk_payment_transactions_order_id_orders"),
        ),
        sa.PrimaryKeyConstraint("transaction_id", name=op.f("pk_payment_transactions")),
        sa.UniqueConstraint("key", name=op.f("uq_payment_transactions_key")),
    )
    with op.batch_alter_table("payment_transactions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_payment_transactions_order_id"), ["order_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("payment_transactions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_payment_transactions_order_id"))
    op.drop_table("payment_transactions")
