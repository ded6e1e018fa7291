"""The rows a move reads and changes, as plain values, and the statements that read and write them.

A move reads its order (locked), deliveries and lines once per transaction (`Tx.kept`), changes
those same objects, and writes each change with a statement of its own, in the move's
transaction: a state only from the state it was read in (compare-and-set). Field names are the ORM's
attribute names (store/tables.py), and each row's columns come from its mapped class, so the two
cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from sqlalchemy import Column, Select, and_, bindparam, insert, select, update
from sqlalchemy.orm import DeclarativeBase

from docket.models.errors import NotFound, StaleState
from docket.models.lifecycles import DeliveryState, OrderState
from docket.models.payments import Operation, Result
from docket.models.schemas import DeliveryGroup, PaymentFlow
from docket.store.direct import Tx
from docket.store.tables import Customer, Delivery, Order, OrderLine, Product, Shop


@dataclass(slots=True)
class OrderRow:
    order_id: str
    shop_id: str
    customer_id: str
    state: OrderState
    payment_flow: PaymentFlow
    currency: str
    total: Decimal
    shipping_address: dict[str, Any]
    placed_at: dt.datetime
    placed_by: str | None
    payment_deadline: dt.datetime | None
    return_until: dt.datetime | None
    rejection: str | None
    payment_token: str | None


@dataclass(slots=True)
class DeliveryRow:
    order_id: str
    delivery_no: int
    group: DeliveryGroup
    warehouse_id: str | None
    state: DeliveryState
    release_at: dt.datetime | None


@dataclass(slots=True)
class LineRow:
    order_id: str
    line_no: int
    delivery_no: int | None
    sku: str
    quantity: int
    unit_price: Decimal
    reserved: int
    allocated: int
    short: int


@dataclass(slots=True)
class StockRow:
    warehouse_id: str
    sku: str
    on_hand: int
    reserved: int


@dataclass(slots=True)
class PaymentRow:
    transaction_id: int
    key: str
    order_id: str
    delivery_no: int | None
    at: dt.datetime
    gateway: str
    operation: Operation
    amount: Decimal
    currency: str
    result: Result
    settled: bool
    reference: str | None
    operator_id: str | None
    note: str | None


@dataclass(frozen=True, slots=True)
class ShopRow:
    shop_id: str
    name: str
    timezone: str
    payment_flow: PaymentFlow
    payment_deadline_hours: int
    return_days: int
    single_parcel: bool
    admin_emails: list[str]
    gateway: str
    gateway_secrets: dict[str, str]
    callback_sources: list[str]


@dataclass(frozen=True, slots=True)
class CustomerRow:
    customer_id: str
    name: str
    email: str


def columns(model: type[DeclarativeBase], row: type) -> list[Column[Any]]:
    """The mapped class's columns, in the order of the row's fields."""
    mapped = model.__mapper__.columns
    return [mapped[f.name] for f in fields(row)]


def select_rows(model: type[DeclarativeBase], row: type) -> Select[Any]:
    return select(*columns(model, row))


def set_from(model: type[DeclarativeBase], *names: str) -> dict[Column[Any], Any]:
    """The mapped attributes `names`, each set from a parameter of its name (for `.values()` of an
    INSERT or UPDATE)."""
    mapped = model.__mapper__.columns
    return {mapped[name]: bindparam(name, type_=mapped[name].type) for name in names}


def insert_of(model: type[DeclarativeBase], *names: str) -> Any:
    """An INSERT of the mapped attributes `names` (its parameters named after them): the columns
    left out take what the database gives (a number it counts up)."""
    return insert(model).values(set_from(model, *names))


def insert_rows(model: type[DeclarativeBase], row: type, leave_out: tuple[str, ...] = ()) -> Any:
    """An INSERT of every field of `row`, less `leave_out`."""
    return insert_of(model, *(f.name for f in fields(row) if f.name not in leave_out))


def values_of(row: Any) -> dict[str, Any]:
    return {f.name: getattr(row, f.name) for f in fields(row)}


# --- the order, locked, with its customer and shop ------------------------------------------

_ORDER_COLUMNS, _CUSTOMER_COLUMNS, _SHOP_COLUMNS = (
    columns(Order, OrderRow),
    columns(Customer, CustomerRow),
    columns(Shop, ShopRow),
)
_LOCKED_ORDER = (
    select(*_ORDER_COLUMNS, *_CUSTOMER_COLUMNS, *_SHOP_COLUMNS)
    .join(Customer, Customer.customer_id == Order.customer_id)
    .join(Shop, Shop.shop_id == Order.shop_id)
    .where(Order.order_id == bindparam("order_id"))
    .with_for_update(of=Order)
)
_ORDER = select_rows(Order, OrderRow).where(Order.order_id == bindparam("order_id"))
_SHOP = select_rows(Shop, ShopRow).where(Shop.shop_id == bindparam("shop_id"))
_CUSTOMER = select_rows(Customer, CustomerRow).where(Customer.customer_id == bindparam("customer_id"))


def locked_order(tx: Tx, order_id: str) -> OrderRow:
    """The order, locked for this transaction (every move of an order takes its row first), with
    its customer and shop read in the same statement and kept (its mail needs them)."""
    found = tx.first(_LOCKED_ORDER, order_id=order_id)
    if found is None:
        raise NotFound(f"unknown order {order_id}")
    a, b = len(_ORDER_COLUMNS), len(_ORDER_COLUMNS) + len(_CUSTOMER_COLUMNS)
    order, customer, shop = OrderRow(*found[:a]), CustomerRow(*found[a:b]), ShopRow(*found[b:])
    tx.kept[("order", order_id)] = order
    tx.kept[("customer", customer.customer_id)] = customer
    tx.kept[("shop", shop.shop_id)] = shop
    return order


_ORDER_SHOP = select(Order.shop_id).where(Order.order_id == bindparam("order_id"))
_PRODUCT_DIGITAL = select(Product.digital).where(Product.sku == bindparam("sku"))


def order_shop(tx: Tx, order_id: str) -> str | None:
    """The shop an order belongs to (it never changes), or None for an unknown order."""
    return tx.scalar(_ORDER_SHOP, order_id=order_id)  # type: ignore[no-any-return]


def product_digital(tx: Tx, sku: str) -> bool | None:
    """Whether a product is digital (None: no such product)."""
    found = tx.first(_PRODUCT_DIGITAL, sku=sku)
    return bool(found[0]) if found else None


def order_row(tx: Tx, order_id: str) -> OrderRow | None:
    """The order as it is, not locked (a read)."""
    found = tx.first(_ORDER, order_id=order_id)
    return OrderRow(*found) if found else None


def shop_row(tx: Tx, shop_id: str) -> ShopRow | None:
    key = ("shop", shop_id)
    if key not in tx.kept:
        found = tx.first(_SHOP, shop_id=shop_id)
        tx.kept[key] = ShopRow(*found) if found else None
    return tx.kept[key]  # type: ignore[no-any-return]


def customer_row(tx: Tx, customer_id: str) -> CustomerRow | None:
    key = ("customer", customer_id)
    if key not in tx.kept:
        found = tx.first(_CUSTOMER, customer_id=customer_id)
        tx.kept[key] = CustomerRow(*found) if found else None
    return tx.kept[key]  # type: ignore[no-any-return]


# --- its deliveries and lines, read once per transaction --------------------------------------

_DELIVERIES = (
    select_rows(Delivery, DeliveryRow)
    .where(Delivery.order_id == bindparam("order_id"))
    .order_by(Delivery.delivery_no)
)
_LINES = (
    select_rows(OrderLine, LineRow)
    .where(OrderLine.order_id == bindparam("order_id"))
    .order_by(OrderLine.line_no)
)


def order_deliveries(tx: Tx, order_id: str) -> list[DeliveryRow]:
    key = ("deliveries", order_id)
    if key not in tx.kept:
        tx.kept[key] = [DeliveryRow(*found) for found in tx.all(_DELIVERIES, order_id=order_id)]
    return tx.kept[key]  # type: ignore[no-any-return]


def order_lines(tx: Tx, order_id: str) -> list[LineRow]:
    key = ("lines", order_id)
    if key not in tx.kept:
        tx.kept[key] = [LineRow(*found) for found in tx.all(_LINES, order_id=order_id)]
    return tx.kept[key]  # type: ignore[no-any-return]


def read_lines_again(tx: Tx, order_id: str) -> None:
    """Bring the order's kept lines (the same objects) up to what is committed now. On PostgreSQL
    each statement reads what is committed when it starts: a receipt may have reserved for a line
    since it was read, until this transaction took the stock lock that orders the two. On SQLite
    the transaction has held the database's one write lock since before it read (BEGIN
    IMMEDIATE): what it read is what is committed."""
    if not tx.postgres:
        return
    fresh = {found[1]: LineRow(*found) for found in tx.all(_LINES, order_id=order_id)}
    for line in order_lines(tx, order_id):
        now = fresh[line.line_no]
        line.reserved, line.allocated, line.short = now.reserved, now.allocated, now.short


# --- writes ------------------------------------------------------------------------------------

INSERT_ORDER = insert_rows(Order, OrderRow)
INSERT_DELIVERY = insert_rows(Delivery, DeliveryRow)
INSERT_LINE = insert_rows(OrderLine, LineRow)

_ORDER_STATE = (
    update(Order)
    .where(Order.order_id == bindparam("id"), Order.state == bindparam("source"))
    .values(state=bindparam("dest", type_=Order.state.type))
)
_DELIVERY_STATE = (
    update(Delivery)
    .where(
        Delivery.order_id == bindparam("id"),
        Delivery.delivery_no == bindparam("no"),
        Delivery.state == bindparam("source"),
    )
    .values(state=bindparam("dest", type_=Delivery.state.type))
)
_LINE_HOLDS = (
    update(OrderLine)
    .where(and_(OrderLine.order_id == bindparam("id"), OrderLine.line_no == bindparam("no")))
    .values(set_from(OrderLine, "reserved", "allocated", "short"))
)
_ORDER_DETAILS = (
    update(Order)
    .where(Order.order_id == bindparam("id"))
    .values(set_from(Order, "return_until", "rejection", "payment_deadline"))
)


def set_order_state(tx: Tx, order: OrderRow, dest: OrderState) -> None:
    """From the state the order was read in to `dest`, or refused if another move got there first."""
    if tx.run(_ORDER_STATE, id=order.order_id, source=order.state, dest=dest) != 1:
        raise StaleState(f"order {order.order_id} is no longer {order.state.value}")
    order.state = dest


def set_delivery_state(tx: Tx, delivery: DeliveryRow, dest: DeliveryState) -> None:
    params = {"id": delivery.order_id, "no": delivery.delivery_no, "source": delivery.state, "dest": dest}
    if tx.run(_DELIVERY_STATE, **params) != 1:
        raise StaleState(
            f"delivery {delivery.order_id}/{delivery.delivery_no} is no longer {delivery.state.value}"
        )
    delivery.state = dest


def save_line(tx: Tx, line: LineRow) -> None:
    """What a line holds now: reserved, allocated, still short."""
    tx.run(
        _LINE_HOLDS,
        id=line.order_id,
        no=line.line_no,
        reserved=line.reserved,
        allocated=line.allocated,
        short=line.short,
    )


def save_order_details(tx: Tx, order: OrderRow) -> None:
    """The order's dates and rejection, as the move set them."""
    tx.run(
        _ORDER_DETAILS,
        id=order.order_id,
        return_until=order.return_until,
        rejection=order.rejection,
        payment_deadline=order.payment_deadline,
    )
