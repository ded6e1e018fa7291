"""Payment moves of the online flows: a charge's answer, and a gateway's callback, applied to the
order through the same guarded write path as every other move."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import bindparam, or_, select, update

from docket.models.errors import InvalidInput, Refused
from docket.models.lifecycles import DeliveryState, OrderState
from docket.models.payments import (
    CAPTURES,
    REFUNDS,
    Answer,
    CallbackFact,
    Charge,
    Operation,
    Result,
    Txn,
    refundable,
)
from docket.models.schemas import MoveDelivery, OrderView, PaymentFlow
from docket.store import outbox, payments, queries
from docket.store.direct import Tx
from docket.store.moves import REFUNDED as REFUND_ENDS
from docket.store.moves import (
    advance,
    delivery_amount,
    move_delivery_state,
    move_order,
    order_delivery,
    refund_owed,
    settle_progress,
    withdraw,
)
from docket.store.rows import OrderRow, PaymentRow, locked_order, order_deliveries, order_row, select_rows
from docket.store.stock import MoveContext
from docket.store.tables import PaymentCallback as StoredCallback
from docket.store.tables import PaymentTransaction


def settle_charge(
    tx: Tx, order_id: str, key: str, gateway: str, answer: Answer, move_id: str, at: dt.datetime
) -> OrderView:
    """The gateway answered the charge at placement (the total captured for prepayment, authorized
    for pay per shipment): the order goes ahead, waits for the callback (processing), or is
    cancelled and its stock released (failed)."""
    order = locked_order(tx, order_id)
    ctx = MoveContext(at=at, note=answer.message)
    payments.record(
        tx,
        key=key,
        order=order,
        gateway=gateway,
        operation=placement_operation(order),
        amount=order.total,
        result=answer.result,
        settled=answer.result is Result.ok and answer.settled,
        reference=answer.reference,
        ctx=ctx,
    )
    _follow(tx, order, answer.result, answer.message, ctx, move_id)
    return queries.order_view(tx, order_id)


# Every callback is marked (loading the row with its body cost more).
_PROCESSED = (
    update(StoredCallback)
    .where(StoredCallback.callback_id == bindparam("callback"), StoredCallback.processed_at.is_(None))
    .values(
        processed_at=bindparam("at", type_=StoredCallback.processed_at.type),
        status=bindparam("answered", type_=StoredCallback.status.type),
        outcome=bindparam("said", type_=StoredCallback.outcome.type),
    )
)


def mark_processed(tx: Tx, callback_id: int, status: int, outcome: str) -> None:
    """The stored callback's answer, once: the first processing of it is the one recorded."""
    tx.run(_PROCESSED, callback=callback_id, at=dt.datetime.now(dt.UTC), answered=status, said=outcome)


def apply_callback(
    tx: Tx, gateway: str, fact: CallbackFact, move_id: str, at: dt.datetime
) -> tuple[OrderView, str]:
    """A verified callback: settle a payment that was processing, record what else it says. A late
    failure of a payment recorded as ok is recorded and changes nothing. Returns the outcome."""
    order = locked_order(tx, fact.order_id)
    if fact.currency != order.currency:
        raise InvalidInput(f"currency {fact.currency} does not match the order's {order.currency}")
    ctx = MoveContext(at=at, note=f"callback {fact.event_id}")
    txn = payments.by_key(tx, fact.idempotency_key) if fact.idempotency_key else None
    if txn is not None and fact.amount != txn.amount:
        raise InvalidInput(f"amount {fact.amount} does not match the {txn.operation.value} of {txn.amount}")
    if txn is None:
        if fact.operation in REFUNDS and fact.result is Result.ok:
            return _external_refund(tx, order, gateway, fact, ctx), "external refund recorded"
        raise InvalidInput(f"no {fact.operation.value} of order {order.order_id} has that idempotency key")
    if txn.result is Result.processing and fact.result in (Result.ok, Result.failed):
        txn.result, txn.settled = fact.result, fact.result is Result.ok and fact.settled is not False
        payments.save_answer(tx, txn)
        if order.state is OrderState.cancelled_waiting_payment:  # it went through too late
            return _too_late(tx, order, fact, ctx, move_id)
        if txn.delivery_no is not None:
            _follow_capture(tx, order, txn.delivery_no, fact.result, ctx, move_id)
        else:
            _follow(tx, order, fact.result, f"gateway: {fact.result.value}", ctx, move_id)
        return queries.order_view(
            tx, order.order_id
        ), f"payment {fact.result.value}: order {order.state.value}"
    if fact.settled and txn.result is Result.ok and txn.operation in CAPTURES:
        outcome = "already recorded: settled" if txn.settled else "capture settled"
        txn.settled = True  # from now on it goes back as a refund, no longer as a void
        payments.save_answer(tx, txn)
        return queries.order_view(tx, order.order_id), outcome
    if txn.result is fact.result:
        return queries.order_view(tx, order.order_id), f"already recorded: {txn.result.value}"
    payments.record(
        tx,
        key=f"callback|{fact.event_id}",
        order=order,
        gateway=txn.gateway,
        operation=fact.operation,
        amount=fact.amount,
        result=fact.result,
        reference=fact.reference,
        ctx=MoveContext(
            at=at, note=f"late {fact.result.value} after {txn.result.value}: recorded, nothing changed"
        ),
    )
    return queries.order_view(
        tx, order.order_id
    ), f"late {fact.result.value} recorded; the payment stays {txn.result.value}"


def _follow(
    tx: Tx, order: OrderRow, result: Result, reason: str | None, ctx: MoveContext, move_id: str
) -> None:
    """What a payment result does to an order waiting for it."""
    if order.state not in (OrderState.pending, OrderState.waiting_payment):
        return
    if result is Result.ok:
        paid = order.payment_flow is not PaymentFlow.per_shipment  # authorized: captured as it ships
        move_order(tx, order, "payment_received" if paid else "accept", ctx, move_id)
        advance(tx, order, ctx, move_id)
    elif result is Result.processing and order.state is OrderState.pending:
        move_order(tx, order, "await_payment", ctx, move_id)
    elif result is Result.failed:
        failed = MoveContext(at=ctx.at, note=f"payment failed: {reason or 'declined'}")
        for delivery in order_deliveries(tx, order.order_id):
            withdraw(tx, order, delivery, failed, move_id)
        outbox.write(tx, move_id, order, None, "payment", "payment_failed", failed)
        move_order(tx, order, "cancel", failed, move_id)


def _too_late(
    tx: Tx, order: OrderRow, fact: CallbackFact, ctx: MoveContext, move_id: str
) -> tuple[OrderView, str]:
    """A payment decided after its order was cancelled: money that came in goes back (the refund
    is asked of the gateway after this transaction); with nothing to give back, the order closes."""
    if refund_owed(tx, order, ctx, move_id):
        return queries.order_view(
            tx, order.order_id
        ), "payment came after the order was cancelled: refunding it"
    move_order(tx, order, "refund_cancelled", ctx, move_id)
    return queries.order_view(
        tx, order.order_id
    ), f"payment {fact.result.value} after the order was cancelled"


def placement_operation(order: OrderRow) -> Operation:
    return (
        Operation.authorize if order.payment_flow is PaymentFlow.per_shipment else Operation.authorize_capture
    )


def ship_captured(
    tx: Tx, cmd: MoveDelivery, key: str, gateway: str, answer: Answer, move_id: str, at: dt.datetime
) -> OrderView:
    """Pay per shipment: the gateway answered the capture of this delivery's amount. Captured, the
    parcel ships; refused or still processing, it is held (`ready_waiting_payment`) until the
    capture goes through (shipping it again asks again)."""
    order = locked_order(tx, cmd.order_id)
    delivery = order_delivery(tx, order.order_id, cmd.delivery_no)
    assert delivery is not None  # the workflow checked it before the gateway was asked
    ctx = MoveContext(at=at, operator_id=cmd.operator_id, note=cmd.note)
    payments.record(
        tx,
        key=key,
        order=order,
        gateway=gateway,
        operation=Operation.capture,
        amount=delivery_amount(tx, delivery),
        result=answer.result,
        settled=answer.result is Result.ok and answer.settled,
        reference=answer.reference,
        delivery_no=delivery.delivery_no,
        ctx=MoveContext(at=at, operator_id=cmd.operator_id, note=answer.message),
    )
    if delivery.state is DeliveryState.ready:
        move_delivery_state(
            tx,
            order,
            delivery,
            "ship" if answer.result is Result.ok else "hold_for_payment",
            ctx,
            move_id,
        )
        if answer.result is Result.failed:
            outbox.write(tx, move_id, order, delivery, "payment", "payment_failed", ctx)
    elif answer.result is Result.ok:
        move_delivery_state(tx, order, delivery, "payment_captured", ctx, move_id)
    settle_progress(tx, order, ctx, move_id)
    return queries.order_view(tx, order.order_id)


_AUTHORIZATION = (
    select_rows(PaymentTransaction, PaymentRow)
    .where(
        PaymentTransaction.order_id == bindparam("order_id"),
        PaymentTransaction.operation == Operation.authorize,
        PaymentTransaction.result == Result.ok,
    )
    .order_by(PaymentTransaction.transaction_id.desc())
    .limit(1)
)


def authorization(tx: Tx, order_id: str) -> PaymentRow | None:
    """The order's authorization that went through (pay per shipment), if any."""
    found = tx.first(_AUTHORIZATION, order_id=order_id)
    return PaymentRow(*found) if found else None


def _follow_capture(
    tx: Tx, order: OrderRow, delivery_no: int, result: Result, ctx: MoveContext, move_id: str
) -> None:
    delivery = order_delivery(tx, order.order_id, delivery_no)
    assert delivery is not None  # a capture's transaction names a delivery of its order
    if result is Result.ok and delivery.state is DeliveryState.ready_waiting_payment:
        move_delivery_state(tx, order, delivery, "payment_captured", ctx, move_id)
        settle_progress(tx, order, ctx, move_id)


def _external_refund(
    tx: Tx, order: OrderRow, gateway: str, fact: CallbackFact, ctx: MoveContext
) -> OrderView:
    """A refund made in the gateway's own panel: recorded, never beyond what was captured."""
    views = payments.transactions(tx, order.order_id)
    amount = min(fact.amount, refundable(Txn(v.operation, v.amount, v.result) for v in views))
    payments.record(
        tx,
        key=f"callback|{fact.event_id}",
        order=order,
        gateway=gateway,
        operation=Operation.external_refund,
        amount=max(amount, Decimal("0.00")),
        result=Result.ok,
        settled=True,
        reference=fact.reference,
        ctx=ctx,
    )
    return queries.order_view(tx, order.order_id)


# --- refunds ------------------------------------------------------------------------------------


# Asked after every move that may give money back, usually to find nothing: built once.
_PENDING_REFUNDS = (
    select_rows(PaymentTransaction, PaymentRow)
    .where(
        PaymentTransaction.order_id == bindparam("order_id"),
        or_(
            *(
                PaymentTransaction.operation == operation
                for operation in (Operation.refund, Operation.void_capture, Operation.reverse_authorization)
            )
        ),
        PaymentTransaction.result == Result.processing,
    )
    .order_by(PaymentTransaction.transaction_id)
)


def pending_refunds(tx: Tx, order_id: str) -> list[tuple[int, str, Charge]]:
    """Refunds, voids and released authorizations recorded as processing and not yet asked of (or
    answered by) their gateway."""
    pending = [PaymentRow(*found) for found in tx.all(_PENDING_REFUNDS, order_id=order_id)]
    if not pending:
        return []
    order = order_row(tx, order_id)
    return [
        (
            t.transaction_id,
            t.gateway,
            Charge(
                operation=t.operation,
                shop_id=order.shop_id if order else "",
                order_id=order_id,
                amount=t.amount,
                currency=t.currency,
                idempotency_key=t.key,
                token=order.payment_token if order else None,
                reference=t.reference,
            ),
        )
        for t in pending
    ]


def refund_outcome(tx: Tx, order_id: str) -> tuple[OrderView, bool]:
    """The order as it is now, and whether the last refund or void asked for it failed: what a
    retried move reports when an earlier try of it asked the gateway already."""
    return queries.order_view(tx, order_id), _last_refund(tx, order_id) is Result.failed


_LAST_REFUND = (
    select(PaymentTransaction.result)
    .where(
        PaymentTransaction.order_id == bindparam("order_id"),
        or_(
            PaymentTransaction.operation == Operation.refund,
            PaymentTransaction.operation == Operation.void_capture,
        ),
    )
    .order_by(PaymentTransaction.transaction_id.desc())
    .limit(1)
)


def _last_refund(tx: Tx, order_id: str) -> Result | None:
    """How the gateway answered the order's last refund or void, if one was asked for."""
    return tx.scalar(_LAST_REFUND, order_id=order_id)  # type: ignore[no-any-return]


def settle_refund(
    tx: Tx, transaction_id: int, answer: Answer, move_id: str, at: dt.datetime
) -> tuple[OrderView, bool]:
    """The gateway answered a refund. Once nothing more is owed, a cancelled or returned order
    waiting for its money reaches its end; a failed refund is reported to the shop's admins and
    retried later. Returns the order and whether the refund failed."""
    txn = payments.by_id(tx, transaction_id)
    if txn is None or txn.result is not Result.processing:  # answered before (a retried activity)
        order_id = txn.order_id if txn else ""
        return queries.order_view(tx, order_id), False
    order = locked_order(tx, txn.order_id)
    acted_on = txn.reference  # a void's or refund's reference is the capture it acts on, until answered
    txn.result, txn.settled = answer.result, answer.result is Result.ok
    txn.reference = answer.reference or txn.reference
    if answer.message:
        txn.note = "; ".join(filter(None, (txn.note, f"gateway: {answer.message}")))  # the clerk's, then its
    payments.save_answer(tx, txn)
    ctx = MoveContext(at=at, operator_id=txn.operator_id, note=answer.message)  # who asked for it
    if txn.operation is Operation.reverse_authorization:  # an authorization released: no money moved
        return queries.order_view(tx, order.order_id), False
    if txn.operation is Operation.void_capture and answer.result is Result.failed:
        _refund_instead(tx, order, txn, acted_on, ctx)
        return queries.order_view(tx, order.order_id), False
    if answer.result is Result.failed:
        outbox.write(tx, move_id, order, None, "payment", "refund_failed", ctx)
        return queries.order_view(tx, order.order_id), True
    owed = refundable(Txn(v.operation, v.amount, v.result) for v in payments.transactions(tx, order.order_id))
    if answer.result is Result.ok and owed <= 0 and order.state in REFUND_ENDS:
        move_order(tx, order, REFUND_ENDS[order.state], ctx, move_id)
    return queries.order_view(tx, order.order_id), False


def _refund_instead(
    tx: Tx, order: OrderRow, void: PaymentRow, capture_reference: str | None, ctx: MoveContext
) -> None:
    """The gateway refused to void a capture: its batch settled it meanwhile. The capture is
    settled, and the money goes back as a refund (asked of the gateway after this transaction)."""
    tx.run(_SETTLED, order_id=order.order_id, reference=capture_reference)
    payments.record(
        tx,
        key=f"{void.key}|refund",
        order=order,
        gateway=void.gateway,
        operation=Operation.refund,
        amount=void.amount,
        result=Result.processing,
        reference=capture_reference,
        ctx=MoveContext(
            at=ctx.at, note="the capture was settled before it could be voided: refunded instead"
        ),
    )


_SETTLED = (
    update(PaymentTransaction)
    .where(
        PaymentTransaction.order_id == bindparam("order_id"),
        PaymentTransaction.reference == bindparam("reference"),
        or_(*(PaymentTransaction.operation == operation for operation in CAPTURES)),
    )
    .values(settled=True)
)


def retry_refund(
    tx: Tx, order_id: str, move_id: str, at: dt.datetime, operator_id: str | None = None
) -> OrderView:
    """Ask again for what a cancelled or returned order still owes (a new refund, a new key): for
    the operator who asked, or for the workflow's timer."""
    order = locked_order(tx, order_id)
    if order.state not in REFUND_ENDS:
        raise Refused(f"order {order.order_id} is {order.state.value}: no refund is waiting to be made")
    if pending_refunds(tx, order_id):
        return queries.order_view(tx, order_id)  # one is on its way already
    if _last_refund(tx, order_id) is Result.manual_required:  # asking again would only say so again
        raise Refused(
            f"order {order.order_id} waits for a refund made by hand (its money was paid offline): "
            "no gateway can be asked; record the refund once it is made"
        )
    refund_owed(tx, order, MoveContext(at=at, operator_id=operator_id, note="refund retried"), move_id)
    return queries.order_view(tx, order_id)
