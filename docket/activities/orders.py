"""Order and stock activities: each is one transaction through the store's guarded write path,
applied at most once per move id."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from docket.activities.loop import run_here
from docket.activities.mail import Mailer
from docket.adapters.payments import PaymentGateway, call
from docket.models.errors import DocketError
from docket.models.messages import (
    AdvanceOrder,
    CancelOrderMove,
    ChargeMove,
    ConfirmPaymentMove,
    DeliveryMove,
    Move,
    Moved,
    PaymentCallbackMove,
    PlaceOrderMove,
    RecordRefundMove,
    RetryRefundMove,
    ReturnOrderMove,
    StockChange,
)
from docket.models.payments import Charge, Operation
from docket.models.schemas import AdjustStock, OrderView, PaymentFlow, StockReceived
from docket.store import charges, moves, outbox, stock
from docket.store.direct import Tx, reading, writing
from docket.store.engine import SessionFactory, engine_of
from docket.store.moves import REFUNDED as REFUND_ENDS
from docket.store.outbox import Letter
from docket.store.rows import insert_of, order_row, shop_row
from docket.store.stock import MoveContext
from docket.store.tables import AppliedMove

R = TypeVar("R", bound=BaseModel)
# Asked only by an attempt that was refused or found its move id taken (`_once`).
_APPLIED = select(AppliedMove.result).where(AppliedMove.move_id == bindparam("move_id"))
_RECORD_APPLIED = insert_of(AppliedMove, "move_id", "applied_at", "result")


def _applied(tx: Tx, move_id: str) -> Any:
    """What the move returned when it was applied, or None."""
    return tx.scalar(_APPLIED, move_id=move_id)


class OrderActivities:
    """Synchronous on purpose: each runs its whole transaction in one worker thread, then (when the
    workflow asks) sends the mail the move wrote."""

    def __init__(self, sessions: SessionFactory, mailer: Mailer, gateways: dict[str, PaymentGateway]):
        self.engine = engine_of(sessions)
        self.mailer = mailer
        self.gateways = gateways

    @activity.defn(name="place_order")
    def place_order(self, move: PlaceOrderMove) -> OrderView | Moved:
        return self._move(move, moves.place_order, move.command)

    @activity.defn(name="confirm_payment")
    def confirm_payment(self, move: ConfirmPaymentMove) -> OrderView | Moved:
        return self._move(move, moves.confirm_payment, move.command)

    @activity.defn(name="move_delivery")
    def move_delivery(self, move: DeliveryMove) -> OrderView | Moved:
        cmd = move.command
        if cmd.trigger == "ship":
            flow = move.payment_flow
            if flow is None:  # a workflow from before moves carried it
                with reading(self.engine) as tx:
                    order = order_row(tx, cmd.order_id)
                    flow = order.payment_flow if order else None
            if flow is PaymentFlow.per_shipment:
                return self._ship_paid(move)
        return self._move(move, moves.move_delivery, cmd)

    def _ship_paid(self, move: DeliveryMove) -> Moved:
        """Pay per shipment: capture the delivery's amount against the authorization (asked first,
        under the move's key: a retry gets the first answer), then ship or hold the parcel."""
        cmd, key = move.command, f"{move.move_id}|capture"
        with reading(self.engine) as tx:
            order = order_row(tx, cmd.order_id)
            shop = shop_row(tx, order.shop_id) if order else None
            delivery = moves.order_delivery(tx, cmd.order_id, cmd.delivery_no)
            if order is None or shop is None or delivery is None:
                raise ApplicationError(
                    f"unknown order {cmd.order_id} or delivery", type="NotFound", non_retryable=True
                )
            authorization = charges.authorization(tx, order.order_id)
            gateway = self._gateway(authorization.gateway if authorization else shop.gateway)
            charge = Charge(
                operation=Operation.capture,
                shop_id=order.shop_id,
                order_id=order.order_id,
                amount=moves.delivery_amount(tx, delivery),
                currency=order.currency,
                idempotency_key=key,
                token=order.payment_token,
                reference=authorization.reference if authorization else None,
            )
        answer = run_here(call(gateway, charge))
        view, letters = self._once(
            move.move_id,
            move.at,
            OrderView,
            lambda s: charges.ship_captured(s, cmd, key, gateway.name, answer, move.move_id, move.at),
        )
        return Moved(view=view, mail_waiting=self.mailer.send_now(view.order_id, letters))

    def _gateway(self, name: str) -> PaymentGateway:
        gateway = self.gateways.get(name)
        if gateway is None:
            raise ApplicationError(
                f"no gateway {name!r} in this worker; known: {', '.join(sorted(self.gateways))}",
                type="InvalidInput",
                non_retryable=True,
            )
        return gateway

    @activity.defn(name="cancel_order")
    def cancel_order(self, move: CancelOrderMove) -> OrderView | Moved:
        return self._move(move, moves.cancel_order, move.command, refunds=True)

    @activity.defn(name="return_order")
    def return_order(self, move: ReturnOrderMove) -> OrderView | Moved:
        return self._move(move, moves.return_order, move.command, refunds=True)

    @activity.defn(name="retry_refund")
    def retry_refund(self, move: RetryRefundMove) -> Moved:
        retry = functools.partial(charges.retry_refund, operator_id=move.operator_id)
        moved = self._move(move, retry, move.order_id, refunds=True)
        assert isinstance(moved, Moved)  # only workflows that deliver mail retry refunds
        return moved

    @activity.defn(name="record_refund")
    def record_refund(self, move: RecordRefundMove) -> OrderView | Moved:
        return self._move(move, moves.record_refund, move.command)

    @activity.defn(name="charge")
    def charge(self, move: ChargeMove) -> Moved:
        """Full prepayment: the gateway is asked first, under an idempotency key made from the move
        id (a retry after a crash asks again and gets the first answer: one charge), then the
        answer is recorded and followed in one transaction."""
        key = f"{move.move_id}|charge"
        with reading(self.engine) as tx:
            order = order_row(tx, move.order_id)
            shop = shop_row(tx, order.shop_id) if order else None
            if order is None or shop is None:
                raise ApplicationError(f"unknown order {move.order_id}", type="NotFound", non_retryable=True)
            gateway = self._gateway(shop.gateway)
            charge = Charge(
                operation=charges.placement_operation(order),
                shop_id=order.shop_id,
                order_id=order.order_id,
                amount=order.total,
                currency=order.currency,
                idempotency_key=key,
                token=order.payment_token,
            )
        answer = run_here(call(gateway, charge))
        view, letters = self._once(
            move.move_id,
            move.at,
            OrderView,
            lambda s: charges.settle_charge(
                s, move.order_id, key, gateway.name, answer, move.move_id, move.at
            ),
        )
        return Moved(view=view, mail_waiting=self.mailer.send_now(view.order_id, letters))

    @activity.defn(name="apply_payment_callback")
    def apply_payment_callback(self, move: PaymentCallbackMove) -> Moved:
        def apply(tx: Tx) -> Moved:
            view, outcome = charges.apply_callback(tx, move.gateway, move.fact, move.move_id, move.at)
            if move.callback_id is not None:
                charges.mark_processed(tx, move.callback_id, 200, outcome)
            return Moved(view=view, outcome=outcome)

        moved, letters = self._once(move.move_id, move.at, Moved, apply)
        view, refund_failed = moved.view, False
        if view.state in REFUND_ENDS:  # a payment that came after the order was cancelled goes back
            view, refund_failed, more = self._settle_refunds(view, move, retried=letters is None)
            letters = None if letters is None or more is None else letters + more
        waiting = self.mailer.send_now(view.order_id, letters)
        return moved.model_copy(
            update={"view": view, "mail_waiting": waiting, "refund_failed": refund_failed}
        )

    @activity.defn(name="advance_order")
    def advance_order(self, move: AdvanceOrder) -> OrderView | Moved:
        return self._move(move, moves.advance_order, move.order_id)

    @activity.defn(name="change_stock")
    def change_stock(self, move: StockChange) -> StockReceived:
        cmd = move.command
        ctx = MoveContext(at=move.at, operator_id=cmd.operator_id, note=cmd.note, reference=cmd.reference)

        def change(tx: Tx) -> StockReceived:
            if isinstance(cmd, AdjustStock):
                level, woken, partly = stock.adjust(tx, cmd.warehouse_id, cmd.sku, cmd.delta, ctx)
            else:
                level, woken, partly = stock.receive(
                    tx, cmd.warehouse_id, cmd.sku, cmd.quantity, cmd.kind, ctx, cmd.order_id
                )
            return StockReceived(reference=cmd.reference, level=level, woken=woken, partly=partly)

        return self._once(move.move_id, move.at, StockReceived, change, sends_mail=False)[0]

    def _move(
        self,
        move: Move,
        change: Callable[[Tx, Any, str, dt.datetime], OrderView],
        command: Any,
        refunds: bool = False,
    ) -> OrderView | Moved:
        """An order move: the store function applied to the command, once per move id; then (with
        `refunds`) the refunds it recorded asked of their gateways; then the mail it wrote sent (a
        retry that finds the move applied sends whatever is pending)."""
        view, letters = self._once(
            move.move_id,
            move.at,
            OrderView,
            lambda s: change(s, command, move.move_id, move.at),
            sends_mail=move.deliver_mail,
        )
        refund_failed = False
        if refunds:
            view, refund_failed, more = self._settle_refunds(view, move, retried=letters is None)
            letters = None if letters is None or more is None else letters + more
        if not move.deliver_mail:
            return view  # an order placed before mail delivery existed
        waiting = self.mailer.send_now(view.order_id, letters)
        return Moved(view=view, mail_waiting=waiting, refund_failed=refund_failed)

    def _settle_refunds(
        self, view: OrderView, move: Move, retried: bool
    ) -> tuple[OrderView, bool, list[Letter] | None]:
        """Ask each gateway for the refunds and voids still processing (under their own idempotency
        keys: a retry asks again and gets the first answer) and record the answers. A retry that
        finds them all answered by an earlier try reports the order as those answers left it."""
        failed, asked, letters = False, set[int](), list[Letter]()
        while True:  # a refused void is followed by a refund: asked in the next round
            with reading(self.engine) as tx:
                pending = [p for p in charges.pending_refunds(tx, view.order_id) if p[0] not in asked]
                if retried and not pending and not asked and view.state in REFUND_ENDS:
                    view, failed = charges.refund_outcome(tx, view.order_id)
            if not pending:
                return view, failed, letters
            for transaction_id, name, refund in pending:
                asked.add(transaction_id)
                gateway = self.gateways.get(name)
                if gateway is None:
                    raise ApplicationError(
                        f"no gateway {name!r} to refund through", type="InvalidInput", non_retryable=True
                    )
                answer = run_here(call(gateway, refund))
                with writing(self.engine) as tx:
                    if move.deliver_mail:
                        outbox.hand_over(tx)  # sent with the move's own
                    view, did_fail = charges.settle_refund(tx, transaction_id, answer, move.move_id, move.at)
                failed = failed or did_fail
                letters += outbox.written_letters(tx)

    def _once(
        self,
        move_id: str,
        at: dt.datetime,
        result_type: type[R],
        change: Callable[[Tx], R],
        sends_mail: bool = True,
    ) -> tuple[R, list[Letter] | None]:
        """Apply `change` in one transaction unless this move id was applied before: then return
        what it returned the first time. Also returns the outbox rows the change wrote, handed
        over to the caller to send when it `sends_mail` (None when it was applied before: they
        may be anywhere by now). Domain errors are final, anything else is retried.

        The move's row in `applied_moves`, written in the same transaction, is what makes it
        happen once: its id is the table's key. The store is not asked first whether the move was
        applied (a statement every move paid for what only a retry needs): an attempt that finds
        it applied fails on the change itself (the state it moves from is gone: refused) or on
        that key (a change that can be made again, such as advancing an order), its transaction
        is rolled back whole, and it answers what the move returned the first time."""
        try:
            with writing(self.engine) as tx:
                if sends_mail:
                    outbox.hand_over(tx)
                result = change(tx)
                tx.append(
                    _RECORD_APPLIED, move_id=move_id, applied_at=at, result=result.model_dump(mode="json")
                )
            return result, outbox.written_letters(tx)
        except (DocketError, IntegrityError) as error:
            # Refused, or the key taken: the move may have been applied already, by an earlier
            # attempt (its worker stopped before reporting) or by one running beside this one
            # (Temporal retries an attempt that outlived its time-out while it still runs; on
            # PostgreSQL both then queue on the order's or the stock's lock). If so, this attempt
            # answers as the first.
            with reading(self.engine) as tx:
                prior = _applied(tx, move_id)
            if prior is not None:
                return result_type.model_validate(prior), None
            if isinstance(error, IntegrityError):
                raise  # another move wrote the same row first: retried, it reads it
            # A refusal the caller is told of: not a failure to log (BENIGN).
            raise ApplicationError(
                str(error), type=error.kind, non_retryable=True, category=ApplicationErrorCategory.BENIGN
            ) from error
