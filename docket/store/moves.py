"""The one guarded write path for order and delivery state.

Every move: compare-and-set on the current state (checked against the lifecycle table), an audit
row, the stock ledger rows the move implies, and the outbox rows of its notifications, all in the
caller's transaction (store.direct). Functions here take the transaction and never commit: the
caller owns it.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy import bindparam, select

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
from docket.store.direct import Tx
from docket.store.rows import (
    INSERT_DELIVERY,
    INSERT_LINE,
    INSERT_ORDER,
    DeliveryRow,
    LineRow,
    OrderRow,
    customer_row,
    insert_of,
    locked_order,
    order_deliveries,
    order_lines,
    order_row,
    read_lines_again,
    save_line,
    save_order_details,
    set_delivery_state,
    set_order_state,
    shop_row,
    values_of,
)
from docket.store.stock import MoveContext, lock_stock, record
from docket.store.tables import AuditRow, Product, ShopWarehouse

PAID = (OrderState.in_progress, OrderState.partially_shipped)

_PRODUCTS = select(
    Product.sku, Product.digital, Product.online, Product.backorder_allowed, Product.release_date
).where(Product.sku == bindparam("sku"))
_WAREHOUSES = (
    select(ShopWarehouse.warehouse_id)
    .where(ShopWarehouse.shop_id == bindparam("shop_id"))
    .order_by(ShopWarehouse.preference)
)
INSERT_AUDIT = insert_of(
    AuditRow, "at", "order_id", "entity", "trigger", "from_state", "to_state", "operator_id", "note"
)


def place_order(tx: Tx, cmd: PlaceOrder, move_id: str, at: dt.datetime) -> OrderView:
    """Write the order, split it into deliveries and reserve its stock; or record its rejection.

    Placing an order id that exists returns what was recorded the first time."""
    if order_row(tx, cmd.order_id) is not None:
        return queries.order_view(tx, cmd.order_id)
    shop = shop_row(tx, cmd.shop_id)
    if shop is None:
        raise NotFound(f"unknown shop {cmd.shop_id}")
    if customer_row(tx, cmd.customer_id) is None:
        raise NotFound(f"unknown customer {cmd.customer_id}")
    products = _products(tx, [line.sku for line in cmd.lines])
    warehouses = [warehouse_id for (warehouse_id,) in tx.all(_WAREHOUSES, shop_id=shop.shop_id)]
    physical = [line.sku for line in cmd.lines if not products[line.sku].digital]
    locked = lock_stock(tx, [(w, sku) for w in warehouses for sku in physical])
    flow = cmd.payment_flow or shop.payment_flow
    order = OrderRow(
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
        return_until=None,
        rejection=None,
        payment_token=cmd.payment_token,
    )
    tx.kept[("order", order.order_id)] = order
    requests = [LineRequest(no, line.sku, line.quantity) for no, line in enumerate(cmd.lines, start=1)]
    prices = {no: line.unit_price for no, line in enumerate(cmd.lines, start=1)}
    ctx = MoveContext(at=at, operator_id=cmd.operator_id, note=cmd.note, reference=cmd.order_id)
    try:
        plan = split_order(
            requests,
            products,
            warehouses,
            {key: s.on_hand - s.reserved for key, s in locked.items()},
            at.astimezone(ZoneInfo(shop.timezone)).date(),
            shop.single_parcel if cmd.single_parcel is None else cmd.single_parcel,
        )
    except OrderRejected as rejected:
        order.rejection, order.payment_deadline = str(rejected), None
        lines = [
            LineRow(order.order_id, r.line_no, None, r.sku, r.quantity, prices[r.line_no], 0, 0, 0)
            for r in requests
        ]
        _insert(tx, order, [], lines)
        audit(tx, order, "order", "place", None, OrderState.pending, ctx)
        move_order(tx, order, "reject", ctx, move_id)
        return queries.order_view(tx, order.order_id)
    tz = ZoneInfo(shop.timezone)
    deliveries, lines = [], []
    for no, planned in enumerate(plan, start=1):
        deliveries.append(
            DeliveryRow(
                order_id=order.order_id,
                delivery_no=no,
                group=planned.group,
                warehouse_id=planned.warehouse_id,
                state=DeliveryState.new,
                release_at=release_moment(planned.release_date, tz),
            )
        )
        waits = planned.group in (DeliveryGroup.preorder, DeliveryGroup.backorder, DeliveryGroup.mixed)
        for p in planned.lines:
            line = LineRow(
                order_id=order.order_id,
                line_no=p.line_no,
                delivery_no=no,
                sku=p.sku,
                quantity=p.quantity,
                unit_price=prices[p.line_no],
                reserved=p.reserve,
                allocated=0,
                short=p.quantity - p.reserve if waits else 0,
            )
            lines.append(line)
            if p.reserve:
                stock = locked[(planned.warehouse_id or "", p.sku)]
                record(tx, stock, StockMoveKind.reserve, ctx, reserved=p.reserve, line=line)
    _insert(tx, order, deliveries, sorted(lines, key=lambda line: line.line_no))
    audit(tx, order, "order", "place", None, OrderState.pending, ctx)
    # The order is whole now: its moves and their notifications can see every line.
    outbox.write(tx, move_id, order, None, "order", "place", ctx)
    for delivery in deliveries:
        move_delivery_state(tx, order, delivery, "reserve", ctx, move_id)
    if flow is PaymentFlow.offline:
        move_order(tx, order, "await_confirmation", ctx, move_id)
    elif flow is PaymentFlow.on_delivery:
        move_order(tx, order, "accept", ctx, move_id)
        advance(tx, order, ctx, move_id)
    elif flow not in (PaymentFlow.prepayment, PaymentFlow.per_shipment):  # pending while charged
        raise InvalidInput(
            f"payment flow {flow.value} is not available; use offline, prepayment, per_shipment or on_delivery"
        )
    return queries.order_view(tx, order.order_id)


def _insert(tx: Tx, order: OrderRow, deliveries: list[DeliveryRow], lines: list[LineRow]) -> None:
    """The new order's rows, kept for the rest of the move as if read."""
    tx.run(INSERT_ORDER, **values_of(order))
    tx.run_many(INSERT_DELIVERY, [values_of(d) for d in deliveries])
    tx.run_many(INSERT_LINE, [values_of(line) for line in lines])
    tx.kept[("deliveries", order.order_id)] = deliveries
    tx.kept[("lines", order.order_id)] = lines


def confirm_payment(tx: Tx, cmd: ConfirmPayment, move_id: str, at: dt.datetime) -> OrderView:
    order = locked_order(tx, cmd.order_id)
    ctx = MoveContext(at=at, operator_id=cmd.operator_id, note=cmd.note)
    move_order(tx, order, "confirm_payment", ctx, move_id)
    # The clerk saw the money arrive: the whole total, captured and settled, by the offline gateway.
    payments.record(
        tx,
        key=f"{move_id}|capture",
        order=order,
        gateway="offline",
        operation=Operation.capture,
        amount=order.total,
        result=Result.ok,
        settled=True,
        ctx=ctx,
    )
    advance(tx, order, ctx, move_id)
    return queries.order_view(tx, order.order_id)


def advance_order(tx: Tx, order_id: str, move_id: str, at: dt.datetime) -> OrderView:
    """Move every delivery as far as payment, its date and its stock allow (a date came, stock came)."""
    order = locked_order(tx, order_id)
    advance(tx, order, MoveContext(at=at), move_id)
    return queries.order_view(tx, order_id)


def move_delivery(tx: Tx, cmd: MoveDelivery, move_id: str, at: dt.datetime) -> OrderView:
    order = locked_order(tx, cmd.order_id)
    if order.state not in PAID:
        raise Refused(f"order {order.order_id} is {order.state.value}: deliveries move once it is paid")
    delivery = order_delivery(tx, order.order_id, cmd.delivery_no)
    if delivery is None:
        raise NotFound(f"order {order.order_id} has no delivery {cmd.delivery_no}")
    ctx = MoveContext(at=at, operator_id=cmd.operator_id, note=cmd.note)
    trigger = cmd.trigger
    if order.payment_flow is PaymentFlow.on_delivery and trigger == "ship":
        trigger = "ship_awaiting_payment"  # the money comes with the parcel
    move_delivery_state(tx, order, delivery, trigger, ctx, move_id)
    if order.payment_flow is PaymentFlow.on_delivery and trigger == "deliver":
        payments.record(
            tx,
            key=f"{move_id}|collect",
            order=order,
            gateway="offline",
            operation=Operation.capture,
            amount=delivery_amount(tx, delivery),
            result=Result.ok,
            settled=True,
            delivery_no=delivery.delivery_no,
            ctx=MoveContext(at=at, operator_id=cmd.operator_id, note=cmd.note or "collected on delivery"),
        )
    settle_progress(tx, order, ctx, move_id)
    return queries.order_view(tx, order.order_id)


def cancel_order(tx: Tx, cmd: CancelOrder, move_id: str, at: dt.datetime) -> OrderView:
    """Cancel: reservations are released, allocated stock is credited back; refused once any
    delivery is on its way."""
    order = locked_order(tx, cmd.order_id)
    deliveries = order_deliveries(tx, order.order_id)
    refusal = why_not_cancel(order.order_id, deliveries)
    if refusal:
        raise Refused(refusal)
    ORDER.dest(order.state, "cancel", ruled_out(deliveries))  # refuse early, naming what is allowed
    ctx = MoveContext(at=at, operator_id=cmd.operator_id, note=cmd.reason)
    for delivery in deliveries:
        withdraw(tx, order, delivery, ctx, move_id)
    owed = refund_owed(tx, order, ctx, move_id)
    _release_authorization(tx, order, ctx, move_id)
    # A payment still processing at the gateway may yet go through: the order waits for its
    # outcome (and refunds it if it does) instead of closing.
    undecided = any(
        t.result is Result.processing and t.operation in (Operation.authorize, Operation.authorize_capture)
        for t in payments.transactions(tx, order.order_id)
    )
    move_order(tx, order, "cancel_awaiting_refund" if owed or undecided else "cancel", ctx, move_id)
    return queries.order_view(tx, order.order_id)


def return_order(tx: Tx, cmd: ReturnOrder, move_id: str, at: dt.datetime) -> OrderView:
    """Deliveries on their way (delivered, or brought back by the carrier) come back; any not yet
    on their way are withdrawn. Restocking is separate."""
    order = locked_order(tx, cmd.order_id)
    deliveries = order_deliveries(tx, order.order_id)
    ORDER.dest(order.state, "return_goods", ruled_out(deliveries))
    refusal = why_not_return(order.order_id, deliveries)
    if refusal:
        raise Refused(refusal)
    ctx = MoveContext(at=at, operator_id=cmd.operator_id, note=cmd.note)
    for delivery in deliveries:
        if delivery.state in ON_ITS_WAY:
            move_delivery_state(tx, order, delivery, "return_goods", ctx, move_id)
        else:
            withdraw(tx, order, delivery, ctx, move_id)
    owed = refund_owed(tx, order, ctx, move_id)
    _release_authorization(tx, order, ctx, move_id)
    move_order(tx, order, "return_awaiting_refund" if owed else "return_goods", ctx, move_id)
    return queries.order_view(tx, order.order_id)


REFUNDED = {
    OrderState.cancelled_waiting_payment: "refund_cancelled",
    OrderState.returned_waiting_payment: "refund_returned",
}


def record_refund(tx: Tx, cmd: RecordRefund, move_id: str, at: dt.datetime) -> OrderView:
    """A clerk refunded by hand what the order still owes: recorded, and the order closes."""
    order = locked_order(tx, cmd.order_id)
    trigger = REFUNDED.get(order.state)
    if trigger is None:
        raise Refused(f"order {order.order_id} is {order.state.value}: no refund is waiting to be made")
    views = payments.transactions(tx, order.order_id)
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
        tx,
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
    move_order(tx, order, trigger, ctx, move_id)
    return queries.order_view(tx, order.order_id)


def refund_owed(tx: Tx, order: OrderRow, ctx: MoveContext, move_id: str) -> Decimal:
    """Money captured and not yet refunded goes back, through the gateway that took it: a capture
    the gateway has not settled yet (its batch has not run) is voided, the rest refunded. Each is
    recorded as processing here and asked of the gateway after this transaction (offline money
    comes back as manual_required: a clerk refunds by hand and records it)."""
    views = payments.transactions(tx, order.order_id)
    owed = refundable(Txn(v.operation, v.amount, v.result) for v in views)
    if owed <= 0:
        return owed
    rest = owed
    if not any(v.operation in (*REFUNDS, Operation.void_capture) for v in views):  # nothing given back yet
        for v in views:
            if v.operation in CAPTURES and v.result is Result.ok and not v.settled and v.amount <= rest:
                payments.record(
                    tx,
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
            tx,
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


def _release_authorization(tx: Tx, order: OrderRow, ctx: MoveContext, move_id: str) -> None:
    """What was authorized and not captured (pay per shipment) is released at the gateway."""
    views = payments.transactions(tx, order.order_id)
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
            tx,
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


def move_order(tx: Tx, order: OrderRow, trigger: str, ctx: MoveContext, move_id: str) -> None:
    source = order.state
    try:
        dest = ORDER.dest(source, trigger)
    except IllegalTransition:  # refused: say so without offering what the deliveries rule out
        ORDER.dest(source, trigger, ruled_out(order_deliveries(tx, order.order_id)))
        raise
    set_order_state(tx, order, dest)
    audit(tx, order, "order", trigger, source, dest, ctx)
    outbox.write(tx, move_id, order, None, "order", trigger, ctx)


def move_delivery_state(
    tx: Tx,
    order: OrderRow,
    delivery: DeliveryRow,
    trigger: str,
    ctx: MoveContext,
    move_id: str,
) -> None:
    move_delivery_states(tx, order, delivery, [trigger], ctx, move_id)


def move_delivery_states(
    tx: Tx,
    order: OrderRow,
    delivery: DeliveryRow,
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
    set_delivery_state(tx, delivery, state)
    for trigger, before, after in steps:
        delivery.state = after  # as each step's stock, audit and mail see it
        _move_stock(tx, delivery, trigger, ctx)
        audit(tx, order, f"delivery {delivery.delivery_no}", trigger, before, after, ctx)
        outbox.write(tx, move_id, order, delivery, "delivery", trigger, ctx)


def _move_stock(tx: Tx, delivery: DeliveryRow, trigger: str, ctx: MoveContext) -> None:
    if trigger not in ("allocate", "void", "deallocate") or delivery.warehouse_id is None:
        return
    lines = delivery_lines(tx, delivery)
    locked = lock_stock(tx, [(delivery.warehouse_id, line.sku) for line in lines])
    read_lines_again(tx, delivery.order_id)  # what they hold now: under the lock
    for line in lines:
        stock = locked[(delivery.warehouse_id, line.sku)]
        if trigger == "allocate":
            if line.reserved != line.quantity:
                raise StaleState(
                    f"line {line.line_no} holds {line.reserved} of {line.quantity}: cannot allocate"
                )
            record(
                tx,
                stock,
                StockMoveKind.allocate,
                ctx,
                on_hand=-line.quantity,
                reserved=-line.reserved,
                line=line,
            )
            line.allocated, line.reserved = line.quantity, 0
        elif trigger == "void":
            record(tx, stock, StockMoveKind.release, ctx, reserved=-line.reserved, line=line)
            line.reserved, line.short = 0, 0
        else:
            record(tx, stock, StockMoveKind.deallocate, ctx, on_hand=line.allocated, line=line)
            line.allocated = 0
        save_line(tx, line)


def audit(
    tx: Tx,
    order: OrderRow,
    entity: str,
    trigger: str,
    source: OrderState | DeliveryState | None,
    dest: OrderState | DeliveryState,
    ctx: MoveContext,
) -> None:
    tx.append(
        INSERT_AUDIT,
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


def advance(tx: Tx, order: OrderRow, ctx: MoveContext, move_id: str) -> None:
    paid = order.state in PAID
    for delivery in order_deliveries(tx, order.order_id):
        lines = delivery_lines(tx, delivery)
        triggers = automatic_triggers(
            delivery.group,
            delivery.state,
            paid=paid,
            released=delivery.release_at is None or queries.as_utc(delivery.release_at) <= ctx.at,
            fully_reserved=all(line.reserved + line.allocated == line.quantity for line in lines),
        )
        move_delivery_states(tx, order, delivery, triggers, ctx, move_id)
    settle_progress(tx, order, ctx, move_id)


def settle_progress(tx: Tx, order: OrderRow, ctx: MoveContext, move_id: str) -> None:
    """in_progress → partially_shipped → completed, as deliveries ship."""
    if order.state not in PAID:
        return
    states = [d.state for d in order_deliveries(tx, order.order_id)]
    shipped = sum(1 for s in states if s is DeliveryState.shipped)
    if shipped == len(states):
        shop = shop_row(tx, order.shop_id)
        order.return_until = ctx.at + dt.timedelta(days=shop.return_days if shop else 30)
        save_order_details(tx, order)
        move_order(tx, order, "complete", ctx, move_id)
    elif shipped and order.state is OrderState.in_progress:
        move_order(tx, order, "ship_partially", ctx, move_id)


def withdraw(tx: Tx, order: OrderRow, delivery: DeliveryRow, ctx: MoveContext, move_id: str) -> None:
    allowed = DELIVERY.allowed(delivery.state)
    for trigger in ("void", "deallocate"):
        if trigger in allowed:
            move_delivery_state(tx, order, delivery, trigger, ctx, move_id)
            return


# --- reads used by the moves --------------------------------------------------------------------


def order_delivery(tx: Tx, order_id: str, delivery_no: int) -> DeliveryRow | None:
    return next((d for d in order_deliveries(tx, order_id) if d.delivery_no == delivery_no), None)


def delivery_amount(tx: Tx, delivery: DeliveryRow) -> Decimal:
    return sum((line.unit_price * line.quantity for line in delivery_lines(tx, delivery)), Decimal("0.00"))


def delivery_lines(tx: Tx, delivery: DeliveryRow) -> list[LineRow]:
    """One delivery's lines, from the order's lines read once per transaction."""
    return [line for line in order_lines(tx, delivery.order_id) if line.delivery_no == delivery.delivery_no]


def _products(tx: Tx, skus: list[str]) -> dict[str, ProductFacts]:
    found = {}
    for sku in sorted(set(skus)):
        product = tx.first(_PRODUCTS, sku=sku)
        if product is not None:
            found[sku] = ProductFacts(*product)
    unknown = sorted(set(skus) - set(found))
    if unknown:
        raise NotFound(f"unknown SKU {', '.join(unknown)}")
    return found
