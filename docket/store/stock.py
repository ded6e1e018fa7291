"""The stock ledger: every counter change is a ledger row written beside it, in the caller's
transaction. Reservation never takes more than is available: rows are locked (FOR UPDATE on
PostgreSQL, BEGIN IMMEDIATE on SQLite) and the table's CHECK constraints refuse anything else."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from docket.models.errors import InvalidInput, NotFound, Refused
from docket.models.lifecycles import DeliveryState
from docket.models.schemas import (
    LedgerProblem,
    LedgerReport,
    StockLevel,
    StockMoveKind,
    WokenDelivery,
)
from docket.store.appends import append
from docket.store.tables import Delivery, Order, OrderLine, Product, Stock, StockMovement, Warehouse

# An order line joined to the delivery it belongs to.
LINE_OF_DELIVERY = (Delivery.order_id == OrderLine.order_id) & (Delivery.delivery_no == OrderLine.delivery_no)
# Deliveries whose short lines take stock as it arrives.
WAITING_FOR_STOCK = (
    DeliveryState.reserved,
    DeliveryState.wait_date,
    DeliveryState.wait_inventory,
)


@dataclass(frozen=True)
class MoveContext:
    at: dt.datetime
    operator_id: str | None = None
    note: str | None = None
    reference: str | None = None


def lock_stock(session: Session, items: Iterable[tuple[str, str]]) -> dict[tuple[str, str], Stock]:
    """Lock the stock rows of `items` in one fixed order (no deadlocks), creating missing ones."""
    wanted = sorted(set(items))
    if not wanted:
        return {}
    found = _select_for_update(session, wanted)
    missing = [item for item in wanted if item not in found]
    if missing:
        session.add_all(Stock(warehouse_id=w, sku=s, on_hand=0, reserved=0) for w, s in missing)
        session.flush()
        found = _select_for_update(session, wanted)
    return found


def _select_for_update(session: Session, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], Stock]:
    warehouses = {w for w, _ in wanted}
    skus = {s for _, s in wanted}
    rows = session.scalars(
        select(Stock)
        .where(Stock.warehouse_id.in_(warehouses), Stock.sku.in_(skus))
        .order_by(Stock.warehouse_id, Stock.sku)
        .with_for_update()
    )
    return {(r.warehouse_id, r.sku): r for r in rows if (r.warehouse_id, r.sku) in set(wanted)}


def record(
    session: Session,
    stock: Stock,
    kind: StockMoveKind,
    ctx: MoveContext,
    *,
    on_hand: int = 0,
    reserved: int = 0,
    line: OrderLine | None = None,
    order_id: str | None = None,
) -> None:
    """Change a locked stock row's counters and write the ledger row that says so."""
    if on_hand == 0 and reserved == 0:
        return
    stock.on_hand += on_hand
    stock.reserved += reserved
    append(
        session,
        StockMovement,
        at=ctx.at,
        warehouse_id=stock.warehouse_id,
        sku=stock.sku,
        kind=kind,
        on_hand_delta=on_hand,
        reserved_delta=reserved,
        order_id=line.order_id if line else order_id,
        delivery_no=line.delivery_no if line else None,
        line_no=line.line_no if line else None,
        reference=ctx.reference,
        operator_id=ctx.operator_id,
        note=ctx.note,
    )


def check_item(session: Session, warehouse_id: str, sku: str) -> None:
    """A warehouse and a product docket knows, and a product that is kept in stock."""
    if session.get(Warehouse, warehouse_id) is None:
        raise NotFound(f"unknown warehouse {warehouse_id}")
    product = session.get(Product, sku)
    if product is None:
        raise NotFound(f"unknown SKU {sku}")
    if product.digital:
        raise InvalidInput(f"{sku} is a digital product: no stock of it is kept, in any warehouse")


def receive(
    session: Session,
    warehouse_id: str,
    sku: str,
    quantity: int,
    kind: StockMoveKind,
    ctx: MoveContext,
    order_id: str | None = None,
) -> tuple[StockLevel, list[WokenDelivery], list[WokenDelivery]]:
    """Goods arrive (or come back): on hand goes up, then the oldest waiting deliveries take them."""
    check_item(session, warehouse_id, sku)
    if kind is StockMoveKind.return_:
        _check_return(session, order_id or "", sku, quantity)
    stock = (lock_stock(session, [(warehouse_id, sku)]))[(warehouse_id, sku)]
    record(session, stock, kind, ctx, on_hand=quantity, order_id=order_id)
    woken, partly = offer_to_waiting(session, stock, ctx)
    return level(session, stock), woken, partly


# Deliveries whose goods have left the warehouse: what may come back from them.
SENT_OUT = (
    DeliveryState.shipping,
    DeliveryState.shipping_waiting_payment,
    DeliveryState.shipped,
    DeliveryState.returned,
)


def _check_return(session: Session, order_id: str, sku: str, quantity: int) -> None:
    """Goods put back on the shelf from an order: at most what the order sent out of that SKU,
    less what came back from it before (into any warehouse). The order's row is locked first, as
    every move of an order does before its stock, so two returns from one order take turns."""
    if session.get(Order, order_id, with_for_update=True) is None:
        raise NotFound(f"unknown order {order_id}")
    sent_out = (
        select(func.sum(OrderLine.quantity))
        .join(Delivery, LINE_OF_DELIVERY)
        .where(OrderLine.order_id == order_id, OrderLine.sku == sku, Delivery.state.in_(SENT_OUT))
    )
    came_back = select(func.sum(StockMovement.on_hand_delta)).where(
        StockMovement.order_id == order_id,
        StockMovement.sku == sku,
        StockMovement.kind == StockMoveKind.return_,
    )
    sent: int = session.scalar(sent_out) or 0
    back: int = session.scalar(came_back) or 0
    if back + quantity > sent:
        raise Refused(
            f"order {order_id} sent out {sent} {sku}, {back} of them back on the shelf already: "
            f"at most {sent - back} more can be returned from it"
        )


def adjust(
    session: Session, warehouse_id: str, sku: str, delta: int, ctx: MoveContext
) -> tuple[StockLevel, list[WokenDelivery], list[WokenDelivery]]:
    """A count correction. Never below what is reserved: those units are promised to orders."""
    check_item(session, warehouse_id, sku)
    stock = (lock_stock(session, [(warehouse_id, sku)]))[(warehouse_id, sku)]
    if stock.on_hand + delta < stock.reserved:
        raise Refused(
            f"cannot take {-delta} off {sku} at {warehouse_id}: {stock.on_hand} on hand, "
            f"{stock.reserved} reserved for orders; at most {stock.on_hand - stock.reserved} can go"
        )
    record(session, stock, StockMoveKind.adjust, ctx, on_hand=delta)
    woken, partly = offer_to_waiting(session, stock, ctx) if delta > 0 else ([], [])
    return level(session, stock), woken, partly


def offer_to_waiting(
    session: Session, stock: Stock, ctx: MoveContext
) -> tuple[list[WokenDelivery], list[WokenDelivery]]:
    """Reserve what is available for lines still short of it, oldest order first.

    Returns the deliveries now fully reserved (their workflows are told), and those that took
    some and still wait for the rest."""
    available = stock.on_hand - stock.reserved
    if available <= 0:
        return [], []
    short_lines = session.scalars(
        select(OrderLine)
        .join(Delivery, LINE_OF_DELIVERY)
        .join(Order, Order.order_id == OrderLine.order_id)
        .where(
            OrderLine.sku == stock.sku,
            OrderLine.short > 0,
            Delivery.warehouse_id == stock.warehouse_id,
            Delivery.state.in_(WAITING_FOR_STOCK),
        )
        .order_by(Order.placed_at, Order.order_id, OrderLine.line_no)
        .with_for_update(of=OrderLine)
    )
    touched: dict[tuple[str, int], int] = {}
    for line in short_lines:
        if available <= 0:
            break
        take = min(line.short, available)
        available -= take
        line.reserved += take
        line.short -= take
        record(session, stock, StockMoveKind.reserve, ctx, reserved=take, line=line)
        key = (line.order_id, line.delivery_no or 0)
        touched[key] = touched.get(key, 0) + take
    session.flush()
    woken: list[WokenDelivery] = []
    partly: list[WokenDelivery] = []
    for (order_id, delivery_no), took in touched.items():
        short = session.scalar(
            select(func.coalesce(func.sum(OrderLine.short), 0)).where(
                OrderLine.order_id == order_id, OrderLine.delivery_no == delivery_no
            )
        )
        taken = WokenDelivery(order_id=order_id, delivery_no=delivery_no, reserved=took, short=short or 0)
        (partly if taken.short else woken).append(taken)
    return woken, partly


def level(session: Session, stock: Stock) -> StockLevel:
    """A stock row's counters, and what waiting orders still want of it."""
    wanted = backordered(session, stock.warehouse_id, stock.sku)
    return _level(stock, wanted.get((stock.warehouse_id, stock.sku), 0))


def levels(session: Session, warehouse_id: str | None = None, sku: str | None = None) -> list[StockLevel]:
    query = select(Stock).order_by(Stock.warehouse_id, Stock.sku)
    if warehouse_id:
        query = query.where(Stock.warehouse_id == warehouse_id)
    if sku:
        query = query.where(Stock.sku == sku)
    wanted = backordered(session, warehouse_id, sku)
    return [_level(s, wanted.get((s.warehouse_id, s.sku), 0)) for s in session.scalars(query)]


def backordered(
    session: Session, warehouse_id: str | None = None, sku: str | None = None
) -> dict[tuple[str, str], int]:
    """Units that waiting deliveries still want beyond what is reserved for them, per warehouse
    and SKU: what the next receipts go to (`offer_to_waiting`)."""
    query = (
        select(Delivery.warehouse_id, OrderLine.sku, func.sum(OrderLine.short))
        .join(Delivery, LINE_OF_DELIVERY)
        .where(OrderLine.short > 0, Delivery.state.in_(WAITING_FOR_STOCK))
        .group_by(Delivery.warehouse_id, OrderLine.sku)
    )
    if warehouse_id:
        query = query.where(Delivery.warehouse_id == warehouse_id)
    if sku:
        query = query.where(OrderLine.sku == sku)
    return {(w, s): int(n) for w, s, n in session.execute(query) if w is not None}


def _level(stock: Stock, backordered: int) -> StockLevel:
    return StockLevel(
        warehouse_id=stock.warehouse_id,
        sku=stock.sku,
        on_hand=stock.on_hand,
        reserved=stock.reserved,
        backordered=backordered,
    )


# Deliveries that let go of their stock (a cancel, a return before shipping), and those past it.
LET_GO = (DeliveryState.reservation_voided, DeliveryState.deallocated)
PAST_ALLOCATION = (
    DeliveryState.allocated,
    DeliveryState.packing,
    DeliveryState.ready,
    DeliveryState.ready_waiting_payment,
    *SENT_OUT,
)


def _must_hold(line: OrderLine, state: DeliveryState | None, stocked: bool) -> tuple[int, int] | None:
    """(reserved, allocated) that a line's delivery state allows; None while it may be anything
    from nothing to all of it (still reserving)."""
    if state is None or state in LET_GO or not stocked:  # rejected, let go, or digital
        return (0, 0)
    if state in PAST_ALLOCATION:
        return (0, line.quantity)
    return None


def verify(session: Session) -> LedgerReport:
    """Prove the counters are the ledger's sum, that no running total ever went below zero or
    reserved more than was on hand, that each order line holds what its movements say, and that
    a line holds what its delivery's state allows (nothing once the delivery let go of its stock,
    no reservation once it is allocated)."""
    problems: list[LedgerProblem] = []
    counters = {(s.warehouse_id, s.sku): s for s in session.scalars(select(Stock))}
    running: dict[tuple[str, str], tuple[int, int]] = {}
    per_line: dict[tuple[str, int], list[int]] = {}
    movements = 0
    for m in session.scalars(
        select(StockMovement).order_by(StockMovement.movement_id).execution_options(yield_per=2000)
    ):
        movements += 1
        key = (m.warehouse_id, m.sku)
        on_hand, reserved = running.get(key, (0, 0))
        on_hand, reserved = on_hand + m.on_hand_delta, reserved + m.reserved_delta
        running[key] = (on_hand, reserved)
        if reserved < 0 or reserved > on_hand or on_hand < 0:
            problems.append(
                LedgerProblem(
                    where=f"movement {m.movement_id} ({m.kind.value} {m.warehouse_id}/{m.sku})",
                    expected="0 <= reserved <= on hand",
                    found=f"on hand {on_hand}, reserved {reserved}",
                )
            )
        if m.order_id is not None and m.line_no is not None and m.kind != StockMoveKind.return_:
            held = per_line.setdefault((m.order_id, m.line_no), [0, 0])
            held[0] += m.reserved_delta
            if m.kind in (StockMoveKind.allocate, StockMoveKind.deallocate):
                held[1] -= m.on_hand_delta
    for key in sorted(set(counters) | set(running)):
        expected = running.get(key, (0, 0))
        row = counters.get(key)
        found = (row.on_hand, row.reserved) if row else (0, 0)
        if expected != found:
            problems.append(
                LedgerProblem(
                    where=f"stock {key[0]}/{key[1]}",
                    expected=f"on hand {expected[0]}, reserved {expected[1]} (ledger)",
                    found=f"on hand {found[0]}, reserved {found[1]} (counter)",
                )
            )
    lines = 0
    with_deliveries = select(OrderLine, Delivery.state, Delivery.warehouse_id.is_not(None)).outerjoin(
        Delivery, LINE_OF_DELIVERY
    )
    for line, state, stocked in session.execute(with_deliveries):
        lines += 1
        where = f"order {line.order_id} line {line.line_no} ({line.sku})"
        holds = f"reserved {line.reserved}, allocated {line.allocated}"
        reserved, allocated = per_line.get((line.order_id, line.line_no), [0, 0])
        if (reserved, allocated) != (
            line.reserved,
            line.allocated,
        ) or line.reserved + line.allocated > line.quantity:
            problems.append(
                LedgerProblem(
                    where=where,
                    expected=f"reserved {reserved}, allocated {allocated} (ledger), at most {line.quantity}",
                    found=holds,
                )
            )
        elif (must := _must_hold(line, state, stocked)) is not None and must != (
            line.reserved,
            line.allocated,
        ):
            problems.append(
                LedgerProblem(
                    where=where,
                    expected=f"reserved {must[0]}, allocated {must[1]}"
                    f" (its delivery is {state.value if state else 'none: the order was rejected'})",
                    found=holds,
                )
            )
    return LedgerReport(
        counters_checked=len(counters),
        movements_checked=movements,
        lines_checked=lines,
        problems=problems,
    )
