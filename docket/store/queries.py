"""Reads: the views people and the workflow see. Nothing here writes."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterable
from typing import Any, TypeVar, TypeVarTuple, overload

from sqlalchemy import Result, Select, func, select
from sqlalchemy.orm import Session

from docket.models.access import Operator, Role
from docket.models.errors import NotFound
from docket.models.lifecycles import DELIVERY_FINAL, DeliveryState, OrderState
from docket.models.schemas import (
    AuditEntry,
    DeliveryPage,
    DeliveryView,
    LineView,
    MailState,
    OrderPage,
    OrderRecord,
    OrderView,
    OutboxView,
    QueuedDelivery,
    StockMovementView,
)
from docket.store import rows
from docket.store.direct import Tx
from docket.store.rows import DeliveryRow, LineRow, OrderRow
from docket.store.tables import (
    AuditRow,
    Delivery,
    OperatorRow,
    Order,
    OrderLine,
    OutboxRow,
    StockMovement,
)

Ts = TypeVarTuple("Ts")


@overload
def as_utc(value: dt.datetime) -> dt.datetime: ...
@overload
def as_utc(value: None) -> None: ...
def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands timestamps back naive, and people type them naive: both mean UTC."""
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def order_view(tx: Tx, order_id: str) -> OrderView:
    """The order as the workflow and the people who ask see it. In a move, from the rows the move
    read and changed (`Tx.kept`): nothing is read twice."""
    order = tx.kept.get(("order", order_id)) or rows.order_row(tx, order_id)
    if order is None:
        raise NotFound(f"unknown order {order_id}")
    lines: Lines = {}
    for line in rows.order_lines(tx, order_id):
        lines.setdefault((order_id, line.delivery_no), []).append(line)
    return _view(order, rows.order_deliveries(tx, order_id), lines)


def _views(session: Session, orders: list[Order]) -> list[OrderView]:
    ids = [o.order_id for o in orders]
    deliveries: dict[str, list[Delivery]] = {}
    for d in session.scalars(
        select(Delivery).where(Delivery.order_id.in_(ids)).order_by(Delivery.delivery_no)
    ):
        deliveries.setdefault(d.order_id, []).append(d)
    lines = _lines_by_delivery(session, ids)
    return [_view(o, deliveries.get(o.order_id, []), lines) for o in orders]


Lines = dict[tuple[str, int | None], list[OrderLine | LineRow]]


def _lines_by_delivery(session: Session, order_ids: Iterable[str]) -> Lines:
    """The orders' lines by (order, delivery), in line order."""
    lines: Lines = {}
    for line in session.scalars(
        select(OrderLine).where(OrderLine.order_id.in_(set(order_ids))).order_by(OrderLine.line_no)
    ):
        lines.setdefault((line.order_id, line.delivery_no), []).append(line)
    return lines


def _view(o: Order | OrderRow, deliveries: list[Delivery] | list[DeliveryRow], lines: Lines) -> OrderView:
    return OrderView(
        order_id=o.order_id,
        shop_id=o.shop_id,
        customer_id=o.customer_id,
        state=o.state,
        payment_flow=o.payment_flow,
        currency=o.currency,
        total=o.total,
        placed_at=as_utc(o.placed_at),
        payment_deadline=as_utc(o.payment_deadline),
        return_until=as_utc(o.return_until),
        rejection=o.rejection,
        deliveries=[_delivery(DeliveryView, d, o, lines) for d in deliveries],
    )


V = TypeVar("V", bound=DeliveryView)


def _delivery(view: type[V], d: Delivery | DeliveryRow, o: Order | OrderRow, lines: Lines, **more: Any) -> V:
    return view(
        delivery_no=d.delivery_no,
        group=d.group,
        warehouse_id=d.warehouse_id,
        state=d.state,
        release_at=as_utc(d.release_at),
        lines=[_line(line, o.currency) for line in lines.get((o.order_id, d.delivery_no), [])],
        **more,
    )


def _line(line: OrderLine | LineRow, currency: str) -> LineView:
    return LineView(
        line_no=line.line_no,
        sku=line.sku,
        quantity=line.quantity,
        unit_price=line.unit_price,
        currency=currency,
        reserved=line.reserved,
        allocated=line.allocated,
    )


def order_record(session: Session, order_id: str) -> OrderRecord:
    view = order_view(Tx.of(session), order_id)
    history = [
        AuditEntry(
            at=as_utc(a.at),
            operator_id=a.operator_id,
            entity=a.entity,
            trigger=a.trigger,
            from_state=a.from_state,
            to_state=a.to_state,
            note=a.note,
        )
        for a in session.scalars(
            select(AuditRow).where(AuditRow.order_id == order_id).order_by(AuditRow.audit_id)
        )
    ]
    movements = [
        StockMovementView(
            at=as_utc(m.at),
            warehouse_id=m.warehouse_id,
            sku=m.sku,
            kind=m.kind,
            on_hand_delta=m.on_hand_delta,
            reserved_delta=m.reserved_delta,
            order_id=m.order_id,
            delivery_no=m.delivery_no,
            note=m.note,
        )
        for m in session.scalars(
            select(StockMovement)
            .where(StockMovement.order_id == order_id)
            .order_by(StockMovement.movement_id)
        )
    ]
    mails = [
        mail_view(r)
        for r in session.scalars(
            select(OutboxRow).where(OutboxRow.order_id == order_id).order_by(OutboxRow.outbox_id)
        )
    ]
    from docket.store import payments  # payments builds on these reads

    money = payments.transactions(Tx.of(session), order_id)
    return OrderRecord(
        order=view,
        payment=payments.summary(view.total, view.currency, money),
        payments=money,
        history=history,
        stock_movements=movements,
        notifications=mails,
    )


def mail_view(row: OutboxRow) -> OutboxView:
    return OutboxView(
        outbox_id=row.outbox_id,
        order_id=row.order_id,
        delivery_no=row.delivery_no,
        recipient_kind=row.recipient_kind,
        recipient=row.recipient,
        cc=row.cc,
        template_key=row.template_key,
        state=MailState(row.state),
        created_at=as_utc(row.created_at),  # type: ignore[arg-type]
        attempts=row.attempts,
        sent_at=as_utc(row.sent_at),
        error=row.error,
    )


def paged(session: Session, query: Select[*Ts], page: int, page_size: int) -> tuple[int, Result[*Ts]]:
    """How many rows `query` finds in all, and the rows of page `page` (from 1), in its order."""
    total = session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    return total, session.execute(query.offset((page - 1) * page_size).limit(page_size))


def of_shops(query: Select[*Ts], shops: set[str] | None, shop_id: str | None) -> Select[*Ts]:
    """`query` (which reads `Order`) limited to the shops an operator may see (None: every shop)
    and, if given, to one of them."""
    if shops is not None:
        query = query.where(Order.shop_id.in_(shops))
    if shop_id:
        query = query.where(Order.shop_id == shop_id)
    return query


def list_orders(
    session: Session,
    *,
    shops: set[str] | None,
    shop_id: str | None = None,
    state: OrderState | None = None,
    customer_id: str | None = None,
    placed_from: dt.datetime | None = None,
    placed_until: dt.datetime | None = None,
    page: int = 1,
    page_size: int = 50,
) -> OrderPage:
    """Orders newest first. `shops` limits to what the operator may see (None: every shop)."""
    query = of_shops(select(Order), shops, shop_id)
    if state:
        query = query.where(Order.state == state)
    if customer_id:
        query = query.where(Order.customer_id == customer_id)
    if placed_from:
        query = query.where(Order.placed_at >= placed_from)
    if placed_until:
        query = query.where(Order.placed_at < placed_until)
    total, found = paged(session, query.order_by(Order.placed_at.desc(), Order.order_id), page, page_size)
    return OrderPage(
        orders=_views(session, list(found.scalars())), page=page, page_size=page_size, total=total
    )


def list_deliveries(
    session: Session,
    *,
    shops: set[str] | None,
    shop_id: str | None = None,
    warehouse_id: str | None = None,
    state: DeliveryState | None = None,
    page: int = 1,
    page_size: int = 50,
) -> DeliveryPage:
    """Deliveries oldest order first, as they are worked through (packed, handed to the carrier);
    those in `state`, or without it every one not yet ended. `shops` limits to what the operator
    may see (None: every shop)."""
    query = of_shops(select(Delivery, Order).join(Order, Order.order_id == Delivery.order_id), shops, shop_id)
    if warehouse_id:
        query = query.where(Delivery.warehouse_id == warehouse_id)
    # without a state, the deliveries still to be worked on (none that has ended)
    query = query.where(Delivery.state == state if state else Delivery.state.not_in(DELIVERY_FINAL))
    in_order = query.order_by(Order.placed_at, Order.order_id, Delivery.delivery_no)
    total, rows = paged(session, in_order, page, page_size)
    found = rows.all()
    lines = _lines_by_delivery(session, (o.order_id for _, o in found))
    queued = [
        _delivery(
            QueuedDelivery,
            d,
            o,
            lines,
            order_id=o.order_id,
            shop_id=o.shop_id,
            customer_id=o.customer_id,
            placed_at=as_utc(o.placed_at),
        )
        for d, o in found
    ]
    return DeliveryPage(deliveries=queued, page=page, page_size=page_size, total=total)


def token_hash(token: str) -> str:
    """Tokens are long random strings, so one SHA-256 is enough to keep them unreadable at rest."""
    return hashlib.sha256(token.encode()).hexdigest()


def operator_by_token(session: Session, token: str) -> Operator | None:
    row = session.scalar(select(OperatorRow).where(OperatorRow.token_hash == token_hash(token)))
    return _operator(row) if row else None


def operator_by_id(session: Session, operator_id: str) -> Operator:
    row = session.get(OperatorRow, operator_id)
    if row is None:
        raise NotFound(f"unknown operator {operator_id}")
    return _operator(row)


def _operator(row: OperatorRow) -> Operator:
    return Operator(row.operator_id, row.name, frozenset(Role(r) for r in row.roles), frozenset(row.shops))
