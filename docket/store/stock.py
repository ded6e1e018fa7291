"""The stock ledger: every counter change is a ledger row written beside it, in the caller's
transaction. Reservation never takes more than is available: rows are locked (FOR UPDATE on
PostgreSQL, BEGIN IMMEDIATE on SQLite) and the table's CHECK constraints refuse anything else."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import bindparam, func, or_, select, update
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
from docket.store.direct import Tx
from docket.store.rows import LineRow, StockRow, columns, insert_of, product_digital, save_line, select_rows
from docket.store.tables import Delivery, Order, OrderLine, Stock, StockMovement, Warehouse

# An order line joined to the delivery it belongs to.
LINE_OF_DELIVERY = (Delivery.order_id == OrderLine.order_id) & (Delivery.delivery_no == OrderLine.delivery_no)
# Deliveries whose short lines take stock as it arrives.
WAITING_FOR_STOCK = (
    DeliveryState.reserved,
    DeliveryState.wait_date,
    DeliveryState.wait_inventory,
)
_WAITING = or_(*(Delivery.state == state for state in WAITING_FOR_STOCK))


@dataclass(frozen=True)
class MoveContext:
    at: dt.datetime
    operator_id: str | None = None
    note: str | None = None
    reference: str | None = None


_NEW_STOCK = insert_of(Stock, "warehouse_id", "sku", "on_hand", "reserved")


def lock_stock(tx: Tx, items: Iterable[tuple[str, str]]) -> dict[tuple[str, str], StockRow]:
    """Lock the stock rows of `items` in one fixed order (no deadlocks), creating missing ones."""
    wanted = sorted(set(items))
    found = _locked(tx, wanted)
    missing = [item for item in wanted if item not in found]
    if missing:
        tx.run_many(
            _NEW_STOCK, [{"warehouse_id": w, "sku": s, "on_hand": 0, "reserved": 0} for w, s in missing]
        )
        found = _locked(tx, wanted)
    return found


def _locked(tx: Tx, wanted: list[tuple[str, str]]) -> dict[tuple[str, str], StockRow]:
    """Each row locked alone, in key order (a move locks few: the SKUs of one order)."""
    found: dict[tuple[str, str], StockRow] = {}
    for warehouse_id, sku in wanted:
        row = tx.first(_LOCK_ONE, warehouse_id=warehouse_id, sku=sku)
        if row is not None:
            found[(warehouse_id, sku)] = StockRow(*row)
    return found


_LOCK_ONE = (
    select_rows(Stock, StockRow)
    .where(Stock.warehouse_id == bindparam("warehouse_id"), Stock.sku == bindparam("sku"))
    .with_for_update()
)
_COUNTERS = (
    update(Stock)
    .where(Stock.warehouse_id == bindparam("w"), Stock.sku == bindparam("s"))
    .values(
        on_hand=Stock.on_hand + bindparam("on_hand", type_=Stock.on_hand.type),
        reserved=Stock.reserved + bindparam("reserved", type_=Stock.reserved.type),
    )
)
INSERT_MOVEMENT = insert_of(
    StockMovement,
    "at",
    "warehouse_id",
    "sku",
    "kind",
    "on_hand_delta",
    "reserved_delta",
    "order_id",
    "delivery_no",
    "line_no",
    "reference",
    "operator_id",
    "note",
)


def record(
    tx: Tx,
    stock: StockRow,
    kind: StockMoveKind,
    ctx: MoveContext,
    *,
    on_hand: int = 0,
    reserved: int = 0,
    line: LineRow | None = None,
    order_id: str | None = None,
) -> None:
    """Change a locked stock row's counters and write the ledger row that says so."""
    if on_hand == 0 and reserved == 0:
        return
    tx.run(_COUNTERS, w=stock.warehouse_id, s=stock.sku, on_hand=on_hand, reserved=reserved)
    stock.on_hand += on_hand
    stock.reserved += reserved
    tx.append(
        INSERT_MOVEMENT,
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


_WAREHOUSE_KNOWN = select(Warehouse.warehouse_id).where(Warehouse.warehouse_id == bindparam("id"))


def check_item(tx: Tx, warehouse_id: str, sku: str) -> None:
    """A warehouse and a product docket knows, and a product that is kept in stock."""
    if tx.first(_WAREHOUSE_KNOWN, id=warehouse_id) is None:
        raise NotFound(f"unknown warehouse {warehouse_id}")
    digital = product_digital(tx, sku)
    if digital is None:
        raise NotFound(f"unknown SKU {sku}")
    if digital:
        raise InvalidInput(f"{sku} is a digital product: no stock of it is kept, in any warehouse")


def receive(
    tx: Tx,
    warehouse_id: str,
    sku: str,
    quantity: int,
    kind: StockMoveKind,
    ctx: MoveContext,
    order_id: str | None = None,
) -> tuple[StockLevel, list[WokenDelivery], list[WokenDelivery]]:
    """Goods arrive (or come back): on hand goes up, then the oldest waiting deliveries take them."""
    check_item(tx, warehouse_id, sku)
    if kind is StockMoveKind.return_:
        _check_return(tx, order_id or "", sku, quantity)
    stock = (lock_stock(tx, [(warehouse_id, sku)]))[(warehouse_id, sku)]
    record(tx, stock, kind, ctx, on_hand=quantity, order_id=order_id)
    woken, partly = offer_to_waiting(tx, stock, ctx)
    return level(tx, stock), woken, partly


# Deliveries whose goods have left the warehouse: what may come back from them.
SENT_OUT = (
    DeliveryState.shipping,
    DeliveryState.shipping_waiting_payment,
    DeliveryState.shipped,
    DeliveryState.returned,
)
_LOCK_ORDER = select(Order.order_id).where(Order.order_id == bindparam("order_id")).with_for_update()
_SENT_OUT = (
    select(func.sum(OrderLine.quantity))
    .join(Delivery, LINE_OF_DELIVERY)
    .where(
        OrderLine.order_id == bindparam("order_id"),
        OrderLine.sku == bindparam("sku"),
        or_(*(Delivery.state == state for state in SENT_OUT)),
    )
)
_CAME_BACK = select(func.sum(StockMovement.on_hand_delta)).where(
    StockMovement.order_id == bindparam("order_id"),
    StockMovement.sku == bindparam("sku"),
    StockMovement.kind == StockMoveKind.return_,
)


def _check_return(tx: Tx, order_id: str, sku: str, quantity: int) -> None:
    """Goods put back on the shelf from an order: at most what the order sent out of that SKU,
    less what came back from it before (into any warehouse). The order's row is locked first, as
    every move of an order does before its stock, so two returns from one order take turns."""
    if tx.first(_LOCK_ORDER, order_id=order_id) is None:
        raise NotFound(f"unknown order {order_id}")
    sent: int = tx.scalar(_SENT_OUT, order_id=order_id, sku=sku) or 0
    back: int = tx.scalar(_CAME_BACK, order_id=order_id, sku=sku) or 0
    if back + quantity > sent:
        raise Refused(
            f"order {order_id} sent out {sent} {sku}, {back} of them back on the shelf already: "
            f"at most {sent - back} more can be returned from it"
        )


def adjust(
    tx: Tx, warehouse_id: str, sku: str, delta: int, ctx: MoveContext
) -> tuple[StockLevel, list[WokenDelivery], list[WokenDelivery]]:
    """A count correction. Never below what is reserved: those units are promised to orders."""
    check_item(tx, warehouse_id, sku)
    stock = (lock_stock(tx, [(warehouse_id, sku)]))[(warehouse_id, sku)]
    if stock.on_hand + delta < stock.reserved:
        raise Refused(
            f"cannot take {-delta} off {sku} at {warehouse_id}: {stock.on_hand} on hand, "
            f"{stock.reserved} reserved for orders; at most {stock.on_hand - stock.reserved} can go"
        )
    record(tx, stock, StockMoveKind.adjust, ctx, on_hand=delta)
    woken, partly = offer_to_waiting(tx, stock, ctx) if delta > 0 else ([], [])
    return level(tx, stock), woken, partly


_SHORT_LINES = (
    select(*columns(OrderLine, LineRow))
    .join(Delivery, LINE_OF_DELIVERY)
    .join(Order, Order.order_id == OrderLine.order_id)
    .where(
        OrderLine.sku == bindparam("sku"),
        OrderLine.short > 0,
        Delivery.warehouse_id == bindparam("warehouse_id"),
        _WAITING,
    )
    .order_by(Order.placed_at, Order.order_id, OrderLine.line_no)
    .with_for_update(of=OrderLine)
)
_STILL_SHORT = select(func.coalesce(func.sum(OrderLine.short), 0)).where(
    OrderLine.order_id == bindparam("order_id"), OrderLine.delivery_no == bindparam("delivery_no")
)


def offer_to_waiting(
    tx: Tx, stock: StockRow, ctx: MoveContext
) -> tuple[list[WokenDelivery], list[WokenDelivery]]:
    """Reserve what is available for lines still short of it, oldest order first.

    Returns the deliveries now fully reserved (their workflows are told), and those that took
    some and still wait for the rest."""
    available = stock.on_hand - stock.reserved
    if available <= 0:
        return [], []
    touched: dict[tuple[str, int], int] = {}
    for found in tx.all(_SHORT_LINES, sku=stock.sku, warehouse_id=stock.warehouse_id):
        if available <= 0:
            break
        line = LineRow(*found)
        take = min(line.short, available)
        available -= take
        line.reserved += take
        line.short -= take
        save_line(tx, line)
        record(tx, stock, StockMoveKind.reserve, ctx, reserved=take, line=line)
        key = (line.order_id, line.delivery_no or 0)
        touched[key] = touched.get(key, 0) + take
    woken: list[WokenDelivery] = []
    partly: list[WokenDelivery] = []
    for (order_id, delivery_no), took in touched.items():
        short = tx.scalar(_STILL_SHORT, order_id=order_id, delivery_no=delivery_no)
        taken = WokenDelivery(order_id=order_id, delivery_no=delivery_no, reserved=took, short=short or 0)
        (partly if taken.short else woken).append(taken)
    return woken, partly


def level(tx: Tx, stock: StockRow) -> StockLevel:
    """A stock row's counters, and what waiting orders still want of it."""
    wanted = backordered(tx, stock.warehouse_id, stock.sku)
    return _level(stock, wanted.get((stock.warehouse_id, stock.sku), 0))


def levels(session: Session, warehouse_id: str | None = None, sku: str | None = None) -> list[StockLevel]:
    query = select(Stock).order_by(Stock.warehouse_id, Stock.sku)
    if warehouse_id:
        query = query.where(Stock.warehouse_id == warehouse_id)
    if sku:
        query = query.where(Stock.sku == sku)
    wanted = backordered(Tx.of(session), warehouse_id, sku)
    return [_level(s, wanted.get((s.warehouse_id, s.sku), 0)) for s in session.scalars(query)]


# Either filter may be left out (None): every warehouse, every SKU.
_BACKORDERED = (
    select(Delivery.warehouse_id, OrderLine.sku, func.sum(OrderLine.short))
    .join(Delivery, LINE_OF_DELIVERY)
    .where(
        OrderLine.short > 0,
        _WAITING,
        or_(
            bindparam("warehouse_id", type_=Delivery.warehouse_id.type).is_(None),
            Delivery.warehouse_id == bindparam("warehouse_id"),
        ),
        or_(bindparam("sku", type_=OrderLine.sku.type).is_(None), OrderLine.sku == bindparam("sku")),
    )
    .group_by(Delivery.warehouse_id, OrderLine.sku)
)


def backordered(
    tx: Tx, warehouse_id: str | None = None, sku: str | None = None
) -> dict[tuple[str, str], int]:
    """Units that waiting deliveries still want beyond what is reserved for them, per warehouse
    and SKU: what the next receipts go to (`offer_to_waiting`)."""
    found = tx.all(_BACKORDERED, warehouse_id=warehouse_id, sku=sku)
    return {(w, s): int(n) for w, s, n in found if w is not None}


def _level(stock: Stock | StockRow, backordered: int) -> StockLevel:
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
