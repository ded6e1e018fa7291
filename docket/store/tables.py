"""The tables. Created only through Alembic migrations (store/migrations)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy import Enum as SAEnum
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from docket.models.lifecycles import DeliveryState, OrderState
from docket.models.payments import Operation, Result
from docket.models.schemas import DeliveryGroup, PaymentFlow, StockMoveKind

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Id = String(64)
Money = Numeric(14, 2)
UtcDateTime = DateTime(timezone=True)


def enum(cls: type) -> SAEnum:
    return SAEnum(cls, name=cls.__name__.lower(), native_enum=False, length=32, validate_strings=True)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Shop(Base):
    __tablename__ = "shops"
    shop_id: Mapped[str] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    payment_flow: Mapped[PaymentFlow] = mapped_column(enum(PaymentFlow))
    payment_deadline_hours: Mapped[int] = mapped_column(Integer, default=72)
    return_days: Mapped[int] = mapped_column(Integer, default=30)
    single_parcel: Mapped[bool] = mapped_column(default=False)
    admin_emails: Mapped[list[str]] = mapped_column(JSON, default=list)
    # the card gateway of the online flows, each gateway's callback secret, and the addresses
    # callbacks may come from (empty: any)
    gateway: Mapped[str] = mapped_column(String(32), default="sandbox", server_default="sandbox")
    gateway_secrets: Mapped[dict[str, str]] = mapped_column(JSON, default=dict, server_default="{}")
    callback_sources: Mapped[list[str]] = mapped_column(JSON, default=list, server_default="[]")


class Warehouse(Base):
    __tablename__ = "warehouses"
    warehouse_id: Mapped[str] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    fulfilment_emails: Mapped[list[str]] = mapped_column(JSON, default=list)


class ShopWarehouse(Base):
    """The warehouses a shop ships from, in order of preference."""

    __tablename__ = "shop_warehouses"
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.shop_id"), primary_key=True)
    warehouse_id: Mapped[str] = mapped_column(ForeignKey("warehouses.warehouse_id"), primary_key=True)
    preference: Mapped[int] = mapped_column(Integer)


class Product(Base):
    __tablename__ = "products"
    sku: Mapped[str] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    digital: Mapped[bool] = mapped_column(default=False)
    online: Mapped[bool] = mapped_column(default=True)
    backorder_allowed: Mapped[bool] = mapped_column(default=False)
    release_date: Mapped[dt.date | None] = mapped_column(Date)


class Customer(Base):
    __tablename__ = "customers"
    customer_id: Mapped[str] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))


class CustomerChange(Base):
    """Who registered or changed a customer, when, and the name and address it then had: an
    address changed on the phone is where the order mails go, so it is never changed unseen."""

    __tablename__ = "customer_changes"
    change_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    customer_id: Mapped[str] = mapped_column(Id, index=True)
    operator_id: Mapped[str | None] = mapped_column(Id)  # None: a catalogue file
    outcome: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))


class OperatorRow(Base):
    __tablename__ = "operators"
    operator_id: Mapped[str] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    roles: Mapped[list[str]] = mapped_column(JSON)
    shops: Mapped[list[str]] = mapped_column(JSON, default=list)
    token_hash: Mapped[str] = mapped_column(String(128), unique=True)


class Stock(Base):
    """Counters per warehouse and SKU; always the sum of the ledger. Reserved never exceeds on hand."""

    __tablename__ = "stock"
    __table_args__ = (
        CheckConstraint("reserved >= 0", name="reserved_not_negative"),
        CheckConstraint("reserved <= on_hand", name="reserved_within_on_hand"),
    )
    warehouse_id: Mapped[str] = mapped_column(ForeignKey("warehouses.warehouse_id"), primary_key=True)
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)


class StockMovement(Base):
    """The append-only ledger: every change of a stock counter is one row here."""

    __tablename__ = "stock_movements"
    __table_args__ = (Index("ix_stock_movements_item", "warehouse_id", "sku"),)
    movement_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    warehouse_id: Mapped[str] = mapped_column(Id)
    sku: Mapped[str] = mapped_column(Id)
    kind: Mapped[StockMoveKind] = mapped_column(enum(StockMoveKind))
    on_hand_delta: Mapped[int] = mapped_column(Integer)
    reserved_delta: Mapped[int] = mapped_column(Integer)
    order_id: Mapped[str | None] = mapped_column(Id, index=True)
    delivery_no: Mapped[int | None] = mapped_column(Integer)
    line_no: Mapped[int | None] = mapped_column(Integer)
    reference: Mapped[str | None] = mapped_column(String(128))
    operator_id: Mapped[str | None] = mapped_column(Id)
    note: Mapped[str | None] = mapped_column(Text)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_shop_state", "shop_id", "state"),)
    order_id: Mapped[str] = mapped_column(Id, primary_key=True)
    shop_id: Mapped[str] = mapped_column(ForeignKey("shops.shop_id"))
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.customer_id"), index=True)
    state: Mapped[OrderState] = mapped_column(enum(OrderState))
    payment_flow: Mapped[PaymentFlow] = mapped_column(enum(PaymentFlow))
    currency: Mapped[str] = mapped_column(String(3))
    total: Mapped[Decimal] = mapped_column(Money)
    shipping_address: Mapped[dict[str, Any]] = mapped_column(JSON)
    placed_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)
    placed_by: Mapped[str | None] = mapped_column(Id)
    payment_deadline: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    return_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    rejection: Mapped[str | None] = mapped_column(Text)
    payment_token: Mapped[str | None] = mapped_column(String(200))


class Delivery(Base):
    __tablename__ = "deliveries"
    # A warehouse's work list: its deliveries in one state (`order deliveries`).
    __table_args__ = (Index("ix_deliveries_work", "warehouse_id", "state"),)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.order_id"), primary_key=True)
    delivery_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    group: Mapped[DeliveryGroup] = mapped_column("delivery_group", enum(DeliveryGroup))
    warehouse_id: Mapped[str | None] = mapped_column(ForeignKey("warehouses.warehouse_id"))
    state: Mapped[DeliveryState] = mapped_column(enum(DeliveryState))
    release_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (
        ForeignKeyConstraint(["order_id", "delivery_no"], ["deliveries.order_id", "deliveries.delivery_no"]),
        Index("ix_order_lines_waiting", "sku", "short"),
        CheckConstraint("reserved >= 0 AND reserved + allocated <= quantity", name="within_quantity"),
    )
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.order_id"), primary_key=True)
    line_no: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_no: Mapped[int | None] = mapped_column(Integer)  # None on a rejected order
    sku: Mapped[str] = mapped_column(ForeignKey("products.sku"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Money)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    allocated: Mapped[int] = mapped_column(Integer, default=0)
    # Units still to reserve while the delivery waits for stock (0 otherwise): the index that
    # receiving stock walks, oldest order first.
    short: Mapped[int] = mapped_column(Integer, default=0)


class AuditRow(Base):
    __tablename__ = "audit"
    audit_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    order_id: Mapped[str] = mapped_column(Id, index=True)
    entity: Mapped[str] = mapped_column(String(32))
    trigger: Mapped[str] = mapped_column(String(64))
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    operator_id: Mapped[str | None] = mapped_column(Id)
    note: Mapped[str | None] = mapped_column(Text)


class OutboxRow(Base):
    __tablename__ = "outbox"
    outbox_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # move, delivery, recipient and template: one mail per move and recipient, however often retried
    key: Mapped[str] = mapped_column(String(600), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    order_id: Mapped[str] = mapped_column(Id, index=True)
    delivery_no: Mapped[int | None] = mapped_column(Integer)
    recipient_kind: Mapped[str] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(320))
    # the operator who acted on the customer's behalf, copied on mails to the customer
    cc: Mapped[str | None] = mapped_column(String(320))
    template_key: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)  # pending, sent, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    sent_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    error: Mapped[str | None] = mapped_column(Text)


class PaymentTransaction(Base):
    """One payment operation on an order. `key` is the idempotency key the workflow made once and
    reused on every retry: the same key is one transaction, one charge, one refund."""

    __tablename__ = "payment_transactions"
    transaction_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(200), unique=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.order_id"), index=True)
    delivery_no: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    gateway: Mapped[str] = mapped_column(String(32))
    operation: Mapped[Operation] = mapped_column(enum(Operation))
    amount: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    result: Mapped[Result] = mapped_column(enum(Result))
    settled: Mapped[bool] = mapped_column(default=False)
    reference: Mapped[str | None] = mapped_column(String(200))
    operator_id: Mapped[str | None] = mapped_column(Id)
    note: Mapped[str | None] = mapped_column(Text)


class PaymentCallback(Base):
    """Every authenticated gateway callback, stored before it is processed; one per gateway event."""

    __tablename__ = "payment_callbacks"
    __table_args__ = (UniqueConstraint("gateway", "event_id"),)
    callback_id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    gateway: Mapped[str] = mapped_column(String(32))
    event_id: Mapped[str] = mapped_column(String(200))
    shop_id: Mapped[str] = mapped_column(Id)
    order_id: Mapped[str | None] = mapped_column(Id, index=True)
    source: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    body: Mapped[str] = mapped_column(Text)
    processed_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, index=True)
    status: Mapped[int | None] = mapped_column(Integer)
    outcome: Mapped[str | None] = mapped_column(Text)


class AppliedMove(Base):
    """One row per move that has been applied: a retried activity finds its result here."""

    __tablename__ = "applied_moves"
    move_id: Mapped[str] = mapped_column(String(160), primary_key=True)
    applied_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
