"""The one guarded write path for order and delivery state.

Every move: compare-and-set on the current state (checked against the lifecycle table), an audit
row, the stock ledger rows the move implies, and the outbox rows of its notifications, all in the
caller's transaction. Functions here take a session and never commit (the caller owns it).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Update, bindparam, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from docket.models.errors import IllegalTransition, InvalidInput, NotFound, OrderRejected, Refused, StaleState
from docket.models.fulfilment import automatic_triggers, release_moment
from docket.models.lifecycles import (
    DELIVERY,
    ON_ITS_WAY,
    ORDER,
    DeliveryState,
    OrderState,
    ruled_out,
    why_not_cancel,
    why_not_return,
)
from docket.models.payments import CAPTURES, REFUNDS, Operation, Result, Txn, refundable
from docket.models.schemas import (
    CancelOrder,
    ConfirmPayment,
    DeliveryGroup,
    MoveDelivery,
    OrderView,
    PaymentFlow,
    PlaceOrder,
    RecordRefund,
    ReturnOrder,
    StockMoveKind,
)
from docket.models.splitting import LineRequest, ProductFacts, split_order
from docket.store import outbox, payments, queries
from docket.store.appends import append
from docket.store.stock import MoveContext, lock_stock, record
from docket.store.tables import (
    AuditRow,
    Customer,
    Delivery,
    Order,
    OrderLine,
    Product,
    Shop,
    ShopWarehouse,
)

PAID = (OrderState.in_progress, OrderState.partially_shipped)

# The statements every move runs, built once (building one costs more than running it on SQLite).
# A state changes only from the state the move read: a concurrent move makes it change nothing.
_ORDER = (
    select(Order, Customer, Shop)
    .join(Customer, Customer.customer_id == Order.customer_id)
    .join(Shop, Shop.shop_id == Order.shop_id)
    .where(Order.order_id == bindparam("order_id"))
    .with_for_update(of=Order)
)
_ORDER_STATE = (
    update(Order)
    .where(Order.order_id == bindparam("id"), Order.state == bindparam("source"))
    .values(state=bindparam("dest", type_=Order.state.type))
    .execution_options(synchronize_session=False)
)
_DELIVERY_STATE = (
    update(Delivery)
    .where(
        Delivery.order_id == bindparam("id"),
        Delivery.delivery_no == bindparam("no"),
        Delivery.state == bindparam("source"),
    )
    .values(state=bindparam("dest", type_=Delivery.state.type))
    .execution_options(synchronize_session=False)
)


def place_order(session: Session, cmd: PlaceOrder, move_id: str, at: dt.datetime) -> OrderView:
    """Write the order, split it into deliveries and reserve its stock; or record its rejection.

    Placing an order id that exists returns what was recorded the first time."""
    if session.get(Order, cmd.order_id) is not None:
        return queries.order_view(session, cmd.order_id)
    shop = queries.row(session, Shop, cmd.shop_id)
    if shop is None:
        raise NotFound(f"unknown shop {cmd.shop_id}")
    if queries.row(session, Customer, cmd.customer_id) is None:
        raise NotFound(f"unknown customer {cmd.customer_id}")
    products = _products(session, [line.sku for line in cmd.lines])
    warehouses = list(
        session.scalars(
            select(ShopWarehouse.warehouse_id)
            .where(ShopWarehouse.shop_id == shop.shop_id)
            .order_by(ShopWarehouse.preference)
        )
    )
    physical = [line.sku for line in cmd.lines if not products[line.sku].digital]
    locked = lock_stock(session, [(w, sku) for w in warehouses for sku in physical])
    flow = cmd.payment_flow or shop.payment_flow
    order = Order(
        order_id=cmd.order_id,
        shop_id=shop.shop_id,
        customer_id=cmd.customer_id,
        state=OrderState.pending,
        payment_flow=flow,
        currency=cmd.currency,
        total=sum((line.unit_price * line.quantity for line in cmd.lines), Decimal("0.00")),
        shipping_address=cmd.shipping_address.model_dump(mode="json"),
        placed_at=at,
        placed_by=cmd.operator_id,
        payment_deadline=(
            at + dt.timedelta(hours=shop.payment_deadline_hours)
            if flow in (PaymentFlow.offline, PaymentFlow.prepayment, PaymentFlow.per_shipment)
            else None
        ),
        payment_token=cmd.payment_token,
    )
    session.add(order)
    session.flush()  # the order row first: its deliveries and lines refer to it
    requests = [LineRequest(no, line.sku, line.quantity) for no, line in enumerate(cmd.lines, start=1)]
    prices = {no: line.unit_price for no, line in enumerate(cmd.lines, start=1)}
    ctx = MoveContext(at=at, operator_id=cmd.operator_id, note=cmd.note, reference=cmd.order_id)
    audit(session, order, "order", "place", None, OrderState.pending, ctx)
    try:
        plan = split_order(
            requests,
            {sku: _facts(p) for sku, p in products.items()},
            warehouses,
            {key: s.on_hand - s.reserved for key, s in locked.items()},
            at.astimezone(ZoneInfo(shop.timezone)).date(),
            shop.single_parcel if cmd.single_parcel is None else cmd.single_parcel,
        )
    except OrderRejected as rejected:
        order.rejection, order.payment_deadline = str(rejected), None
        session.add_all(
            OrderLine(
                order_id=order.order_id,
                line_no=r.line_no,
                delivery_no=None,
                sku=r.sku,
                quantity=r.quantity,
                unit_price=prices[r.line_no],
            )
            for r in requests
        )
        move_order(session, order, "reject", ctx, move_id)
        return queries.order_view(session, order.order_id)
    tz = ZoneInfo(shop.timezone)
    deliveries = []
    for no, planned in enumerate(plan, start=1):
        delivery = Delivery(
            order_id=order.order_id,
            delivery_no=no,
            group=planned.group,
            warehouse_id=planned.warehouse_id,
            state=DeliveryState.new,
            release_at=release_moment(planned.release_date, tz),
        )
        session.add(delivery)
        deliveries.append(delivery)
        waits = planned.group in (
            DeliveryGroup.preorder,
            DeliveryGroup.backorder,
            DeliveryGroup.mixed,
        )
        for p in planned.lines:
            line = OrderLine(
                order_id=order.order_id,
                line_no=p.line_no,
                delivery_no=no,
                sku=p.sku,
                quantity=p.quantity,
                unit_price=prices[p.line_no],
                reserved=0,
                allocated=0,
                short=p.quantity - p.reserve if waits else 0,
            )
            session.add(line)
            if p.reserve:
                line.reserved = p.reserve
                record(
                    session,
                    locked[(planned.warehouse_id or "", p.sku)],
                    StockMoveKind.reserve,
                    ctx,
                    reserved=p.reserve,
                    line=line,
                )
    # The order is whole now: its moves and their notifications can see every line.
    session.flush()
    outbox.write(session, move_id, order, None, "order", "place", ctx)
    for delivery in deliveries:
        move_delivery_state(session, order, delivery, "reserve", ctx, move_id)
    if flow is PaymentFlow.offline:
        move_order(session, order, "await_confirmation", ctx, move_id)
    elif flow is PaymentFlow.on_delivery:
        move_order(session, order, "accept", ctx, move_id)
        advance(session, order, ctx, move_id)
    elif flow not in (PaymentFlow.prepayment, PaymentFlow.per_shipment):  # pending while charged
        raise InvalidInput(
            f"payment flow {flow.value} is not available; use offline, prepayment, per_shipment or on_delivery"
        )
    return queries.order_view(session, order.order_id)


def confirm_payment(session: Session, cmd: ConfirmPayment, move_id: str, at: dt.datetime) -> OrderView:
    order = locked_order(session, cmd.order_id)
    ctx = MoveContext(at=at, operator_id=cmd.operator_id, note=cmd.note)
    move_order(session, order, "confirm_payment", ctx, move_id)
    # The clerk saw the money arrive: the whole total, captured and settled, by the offline gateway.
    payments.record(
        session,
        key=f"{move_id}|capture",
        order=order,
        gateway="offline",
        operation=Operation.capture,
        amount=order.total,
        result=Result.ok,
        settled=True,
        ctx=ctx,
    )
    advance(session, order, ctx, move_id)
    return queries.order_view(session, order.order_id)


def advance_order(session: Session, order_id: str, move_id: str, at: dt.datetime) -> OrderView:
    """Move every delivery as far as payment, its date and its stock allow (a date came, stock came)."""
    order = locked_order(session, order_id)
    advance(session, order, MoveContext(at=at), move_id)
    return queries.order_view(session, order_id)


def move_delivery(session: Session, cmd: MoveDelivery, move_id: str, at: dt.datetime) -> OrderView:
    order = locked_order(session, cmd.order_id)
    if order.state not in PAID:
        raise Refused(f"order {order.order_id} is {order.state.value}: deliveries move once it is paid")
    delivery = order_delivery(session, order.order_id, cmd.delivery_no)
    if delivery is None:
        raise NotFound(f"order {order.order_id} has no delivery {cmd.delivery_no}")
    ctx = MoveContext(at=at, operator_id=cmd.operator_id, note=cmd.note)
    trigger = cmd.trigger
    if order.payment_flow is PaymentFlow.on_delivery and trigger == "ship":
        trigger = "ship_awaiting_payment"  # the money comes with the parcel
    move_delivery_state(session, order, delivery, trigger, ctx, move_id)
    if order.payment_flow is PaymentFlow.on_delivery and trigger == "deliver":
        payments.record(
            session,
            key=f"{move_id}|collect",
            order=order,
            gateway="offline",
            operation=Operation.capture,
            amount=delivery_amount(session, delivery),
            result=Result.ok,
            settled=True,
            delivery_no=delivery.delivery_no,
            ctx=MoveContext(at=at, operator_id=cmd.operator_id, note=cmd.note or "collected on delivery"),
        )
    settle_progress(session, order, ctx, move_id)
    return queries.order_view(session, order.order_id)


def cancel_order(session: Session, cmd: CancelOrder, move_id: str, at: dt.datetime) -> OrderView:
    """Cancel: reservations are released, allocated stock is credited back; refused once any
    delivery is on its way."""
    order = locked_order(session, cmd.order_id)
    deliveries = queries.order_deliveries(session, order.order_id)
    refusal = why_not_cancel(order.order_id, deliveries)
    if refusal:
        raise Refused(refusal)
    ORDER.dest(order.state, "cancel", ruled_out(deliveries))  # refuse early, naming what is allowed
    ctx = MoveContext(at=at, operator_id=cmd.operator_id, note=cmd.reason)
    for delivery in deliveries:
        withdraw(session, order, delivery, ctx, move_id)
    owed = refund_owed(session, order, ctx, move_id)
    _release_authorization(session, order, ctx, move_id)
    # A payment still processing at the gateway may yet go through: the order waits for its
    # outcome (and refunds it if it does) instead of closing.
    undecided = any(
        t.result is Result.processing and t.operation in (Operation.authorize, Operation.authorize_capture)
        for t in payments.transactions(session, order.order_id)
    )
    move_order(session, order, "cancel_awaiting_refund" if owed or undecided else "cancel", ctx, move_id)
    return queries.order_view(session, order.order_id)


def return_order(session: Session, cmd: ReturnOrder, move_id: str, at: dt.datetime) -> OrderView:
    """Deliveries on their way (delivered, or brought back by the carrier) come back; any not yet
    on their way are withdrawn. Restocking is separate."""
    order = locked_order(session, cmd.order_id)
    deliveries = queries.order_deliveries(session, order.order_id)
    ORDER.dest(order.state, "return_goods", ruled_out(deliveries))
    refusal = why_not_return(order.order_id, deliveries)
    if refusal:
        raise Refused(refusal)
    ctx = MoveContext(at=at, operator_id=cmd.operator_id, note=cmd.note)
    for delivery in deliveries:
        if delivery.state in ON_ITS_WAY:
            move_delivery_state(session, order, delivery, "return_goods", ctx, move_id)
        else:
            withdraw(session, order, delivery, ctx, move_id)
    owed = refund_owed(session, order, ctx, move_id)
    _release_authorization(session, order, ctx, move_id)
    move_order(session, order, "return_awaiting_refund" if owed else "return_goods", ctx, move_id)
    return queries.order_view(session, order.order_id)


REFUNDED = {
    OrderState.cancelled_waiting_payment: "refund_cancelled",
    OrderState.returned_waiting_payment: "refund_returned",
}


def record_refund(session: Session, cmd: RecordRefund, move_id: str, at: dt.datetime) -> OrderView:
    """A clerk refunded by hand what the order still owes: recorded, and the order closes."""
    order = locked_order(session, cmd.order_id)
    trigger = REFUNDED.get(order.state)
    if trigger is None:
        raise Refused(f"order {order.order_id} is {order.state.value}: no refund is waiting to be made")
    views = payments.transactions(session, order.order_id)
    in_hand = next(
        (
            v
            for v in views
            if v.operation in (*REFUNDS, Operation.void_capture) and v.result is Result.processing
        ),
        None,
    )
    if in_hand is not None:  # the gateway may yet pay it back: by hand too would pay twice
        raise Refused(
            f"a {in_hand.operation.value.replace('_', ' ')} of {in_hand.amount} {order.currency} is still"
            f" processing at {in_hand.gateway}: record a refund by hand only if it fails"
        )
    ctx = MoveContext(at=at, operator_id=cmd.operator_id, note=cmd.note)
    owed = refundable(Txn(v.operation, v.amount, v.result) for v in views)
    payments.record(
        session,
        key=f"{move_id}|refund",
        order=order,
        gateway="offline",
        operation=Operation.refund,
        amount=owed,
        result=Result.ok,
        settled=True,
        reference=cmd.reference,
        ctx=ctx,
    )
    move_order(session, order, trigger, ctx, move_id)
    return queries.order_view(session, order.order_id)


def refund_owed(session: Session, order: Order, ctx: MoveContext, move_id: str) -> Decimal:
    """Money captured and not yet refunded goes back, through the gateway that took it: a capture
    the gateway has not settled yet (its batch has not run) is voided, the rest refunded. Each is
    recorded as processing here and asked of the gateway after this transaction (offline money
    comes back as manual_required: a clerk refunds by hand and records it)."""
    views = payments.transactions(session, order.order_id)
    owed = refundable(Txn(v.operation, v.amount, v.result) for v in views)
    if owed <= 0:
        return owed
    rest = owed
    if not any(v.operation in (*REFUNDS, Operation.void_capture) for v in views):  # nothing given back yet
        for v in views:
            if v.operation in CAPTURES and v.result is Result.ok and not v.settled and v.amount <= rest:
                payments.record(
                    session,
                    key=f"{move_id}|void-{v.transaction_id}",
                    order=order,
                    gateway=v.gateway,
                    operation=Operation.void_capture,
                    amount=v.amount,
                    result=Result.processing,
                    reference=v.reference,
                    delivery_no=v.delivery_no,
                    ctx=ctx,
                )
                rest -= v.amount
    if rest > 0:
        taken = next(
            (t for t in reversed(views) if t.result is Result.ok and t.operation in CAPTURES),
            None,
        )
        payments.record(
            session,
            key=f"{move_id}|refund",
            order=order,
            gateway=taken.gateway if taken else "offline",
            operation=Operation.refund,
            amount=rest,
            result=Result.processing,
            reference=taken.reference if taken else None,
            ctx=ctx,
        )
    return owed


def _release_authorization(session: Session, order: Order, ctx: MoveContext, move_id: str) -> None:
    """What was authorized and not captured (pay per shipment) is released at the gateway."""
    views = payments.transactions(session, order.order_id)
    authorized = [v for v in views if v.operation is Operation.authorize and v.result is Result.ok]
    if not authorized:
        return
    taken = sum(
        (v.amount for v in views if v.operation is Operation.capture and v.result is Result.ok),
        Decimal("0.00"),
    )
    released = sum(
        (v.amount for v in views if v.operation is Operation.reverse_authorization and v.result is Result.ok),
        Decimal("0.00"),
    )
    rest = sum((v.amount for v in authorized), Decimal("0.00")) - taken - released
    if rest > 0:
        payments.record(
            session,
            key=f"{move_id}|reverse",
            order=order,
            gateway=authorized[-1].gateway,
            operation=Operation.reverse_authorization,
            amount=rest,
            result=Result.processing,
            reference=authorized[-1].reference,
            ctx=ctx,
        )


# --- the guarded writes -------------------------------------------------------------------------


def move_order(session: Session, order: Order, trigger: str, ctx: MoveContext, move_id: str) -> None:
    source = order.state
    try:
        dest = ORDER.dest(source, trigger)
    except IllegalTransition:  # refused: say so without offering what the deliveries rule out
        ORDER.dest(source, trigger, ruled_out(queries.order_deliveries(session, order.order_id)))
        raise
    if not _compare_and_set(session, _ORDER_STATE, {"id": order.order_id, "source": source, "dest": dest}):
        raise StaleState(f"order {order.order_id} is no longer {source.value}")
    set_committed_value(order, "state", dest)  # written above; not dirty again
    audit(session, order, "order", trigger, source, dest, ctx)
    outbox.write(session, move_id, order, None, "order", trigger, ctx)


def _compare_and_set(session: Session, statement: Update, params: dict[str, Any]) -> bool:
    """One row from the state it was read in to the next, or no row if another transaction moved
    it first. Sent on the session's connection, as Core: the ORM's bulk-update path cost as much
    again. What the session holds unwritten (a row added in this move) goes out first."""
    session.flush()
    return session.connection().execute(statement, params).rowcount == 1


def move_delivery_state(
    session: Session,
    order: Order,
    delivery: Delivery,
    trigger: str,
    ctx: MoveContext,
    move_id: str,
) -> None:
    move_delivery_states(session, order, delivery, [trigger], ctx, move_id)


def move_delivery_states(
    session: Session,
    order: Order,
    delivery: Delivery,
    triggers: list[str],
    ctx: MoveContext,
    move_id: str,
) -> None:
    """Moves of one delivery in a row (`await_allocation`, then `allocate`): one compare-and-set
    from where it stands to where they end (no other transaction can see the states between),
    then each move's stock, audit row and mail, in order."""
    steps, state = [], delivery.state
    for trigger in triggers:
        steps.append((trigger, state, DELIVERY.dest(state, trigger)))
        state = steps[-1][2]
    if not steps:
        return
    source, dest = delivery.state, state
    params = {"id": delivery.order_id, "no": delivery.delivery_no, "source": source, "dest": dest}
    if not _compare_and_set(session, _DELIVERY_STATE, params):
        raise StaleState(f"delivery {delivery.order_id}/{delivery.delivery_no} is no longer {source.value}")
    for trigger, before, after in steps:
        set_committed_value(delivery, "state", after)
        _move_stock(session, delivery, trigger, ctx)
        audit(session, order, f"delivery {delivery.delivery_no}", trigger, before, after, ctx)
        outbox.write(session, move_id, order, delivery, "delivery", trigger, ctx)


def _move_stock(session: Session, delivery: Delivery, trigger: str, ctx: MoveContext) -> None:
    if trigger not in ("allocate", "void", "deallocate") or delivery.warehouse_id is None:
        return
    lines = delivery_lines(session, delivery)
    locked = lock_stock(session, [(delivery.warehouse_id, line.sku) for line in lines])
    queries.read_lines_again(session, delivery.order_id)  # what they hold now: under the lock
    for line in lines:
        stock = locked[(delivery.warehouse_id, line.sku)]
        if trigger == "allocate":
            if line.reserved != line.quantity:
                raise StaleState(
                    f"line {line.line_no} holds {line.reserved} of {line.quantity}: cannot allocate"
                )
            record(
                session,
                stock,
                StockMoveKind.allocate,
                ctx,
                on_hand=-line.quantity,
                reserved=-line.reserved,
                line=line,
            )
            line.allocated, line.reserved = line.quantity, 0
        elif trigger == "void":
            record(session, stock, StockMoveKind.release, ctx, reserved=-line.reserved, line=line)
            line.reserved, line.short = 0, 0
        else:
            record(session, stock, StockMoveKind.deallocate, ctx, on_hand=line.allocated, line=line)
            line.allocated = 0


def audit(
    session: Session,
    order: Order,
    entity: str,
    trigger: str,
    source: OrderState | DeliveryState | None,
    dest: OrderState | DeliveryState,
    ctx: MoveContext,
) -> None:
    append(
        session,
        AuditRow,
        at=ctx.at,
        order_id=order.order_id,
        entity=entity,
        trigger=trigger,
        from_state=source.value if source else None,
        to_state=dest.value,
        operator_id=ctx.operator_id,
        note=ctx.note,
    )


# --- what follows from a move -------------------------------------------------------------------


def advance(session: Session, order: Order, ctx: MoveContext, move_id: str) -> None:
    paid = order.state in PAID
    for delivery in queries.order_deliveries(session, order.order_id):
        lines = delivery_lines(session, delivery)
        triggers = automatic_triggers(
            delivery.group,
            delivery.state,
            paid=paid,
            released=delivery.release_at is None or queries.as_utc(delivery.release_at) <= ctx.at,
            fully_reserved=all(line.reserved + line.allocated == line.quantity for line in lines),
        )
        move_delivery_states(session, order, delivery, triggers, ctx, move_id)
    settle_progress(session, order, ctx, move_id)


def settle_progress(session: Session, order: Order, ctx: MoveContext, move_id: str) -> None:
    """in_progress → partially_shipped → completed, as deliveries ship."""
    if order.state not in PAID:
        return
    states = [d.state for d in queries.order_deliveries(session, order.order_id)]
    shipped = sum(1 for s in states if s is DeliveryState.shipped)
    if shipped == len(states):
        shop = queries.row(session, Shop, order.shop_id)
        order.return_until = ctx.at + dt.timedelta(days=shop.return_days if shop else 30)
        move_order(session, order, "complete", ctx, move_id)
    elif shipped and order.state is OrderState.in_progress:
        move_order(session, order, "ship_partially", ctx, move_id)


def withdraw(session: Session, order: Order, delivery: Delivery, ctx: MoveContext, move_id: str) -> None:
    allowed = DELIVERY.allowed(delivery.state)
    for trigger in ("void", "deallocate"):
        if trigger in allowed:
            move_delivery_state(session, order, delivery, trigger, ctx, move_id)
            return


# --- reads used by the moves --------------------------------------------------------------------


def locked_order(session: Session, order_id: str) -> Order:
    """The order, locked for this transaction, with its customer and shop in the same query (the
    notifications of the move need them: kept for `queries.row`)."""
    found = session.execute(_ORDER, {"order_id": order_id}).first()
    if found is None:
        raise NotFound(f"unknown order {order_id}")
    queries.keep(session, found[1], found[2])
    return found[0]


def order_delivery(session: Session, order_id: str, delivery_no: int) -> Delivery | None:
    return next(
        (d for d in queries.order_deliveries(session, order_id) if d.delivery_no == delivery_no), None
    )


def delivery_amount(session: Session, delivery: Delivery) -> Decimal:
    return sum(
        (line.unit_price * line.quantity for line in delivery_lines(session, delivery)), Decimal("0.00")
    )


def delivery_lines(session: Session, delivery: Delivery) -> list[OrderLine]:
    """One delivery's lines, from the order's lines read once per transaction."""
    return [
        line
        for line in queries.order_lines(session, delivery.order_id)
        if line.delivery_no == delivery.delivery_no
    ]


def _products(session: Session, skus: list[str]) -> dict[str, Product]:
    found = {p.sku: p for p in session.scalars(select(Product).where(Product.sku.in_(set(skus))))}
    unknown = sorted(set(skus) - set(found))
    if unknown:
        raise NotFound(f"unknown SKU {', '.join(unknown)}")
    return found


def _facts(p: Product) -> ProductFacts:
    return ProductFacts(p.sku, p.digital, p.online, p.backorder_allowed, p.release_date)
