"""The order workflow: one order from placement to its end."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from docket.models.errors import IllegalTransition
    from docket.models.lifecycles import (
        DELIVERY,
        ORDER,
        DeliveryState,
        OrderState,
        ruled_out,
        why_not_cancel,
        why_not_return,
    )
    from docket.models.messages import (
        AdvanceOrder,
        CancelOrderMove,
        ChargeMove,
        ConfirmPaymentMove,
        DeliverMail,
        DeliveryMove,
        MailDelivered,
        MailDue,
        Move,
        Moved,
        PaymentCallback,
        PaymentCallbackMove,
        PaymentOutcome,
        PlaceOrderMove,
        RecordRefundMove,
        RetryRefundMove,
        ReturnOrderMove,
        StockReserved,
    )
    from docket.models.schemas import (
        CancelOrder,
        ConfirmPayment,
        MoveDelivery,
        OrderView,
        PaymentFlow,
        PlaceOrder,
        RecordRefund,
        RetryRefund,
        ReturnOrder,
    )

ACTIVITY_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": dt.timedelta(seconds=15),
    "retry_policy": RetryPolicy(
        initial_interval=dt.timedelta(milliseconds=200), maximum_interval=dt.timedelta(seconds=10)
    ),
}
# Mail waits for SMTP as long as it takes: retried with backoff, never given up. An attempt
# heartbeats while it runs: a worker lost mid-delivery is noticed within the heartbeat time-out and
# another takes over. The hour only bounds a delivery whose every SMTP step crawls: a second
# attempt started beside one still sending would send the same mail again.
MAIL_OPTIONS: dict[str, Any] = {
    "start_to_close_timeout": dt.timedelta(hours=1),
    "heartbeat_timeout": dt.timedelta(seconds=20),
    "retry_policy": RetryPolicy(
        initial_interval=dt.timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=dt.timedelta(seconds=60),
    ),
}
# Orders placed before mail delivery existed replay without it (workflow.patched).
MAIL_PATCH = "deliver-mail"
# A gateway's callback is applied by a local activity: run by the worker inside the workflow task
# that took the update, so the server records one task, not an activity's three events and a second
# task. Callbacks applied before this replay as the activities they were (workflow.patched).
LOCAL_CALLBACK_PATCH = "local-callback"
WAITING_FOR_DATE = (DeliveryState.reserved, DeliveryState.wait_date)
PAID = (OrderState.in_progress, OrderState.partially_shipped)
ENDED = (OrderState.rejected, OrderState.cancelled, OrderState.returned)
UNPAID = (OrderState.waiting_confirmation, OrderState.waiting_payment)
CHARGED_AT_PLACEMENT = (PaymentFlow.prepayment, PaymentFlow.per_shipment)
REFUND_RETRY_FIRST = dt.timedelta(minutes=1)
REFUND_RETRY_MAX = dt.timedelta(hours=1)
WAITING_FOR_REFUND = (OrderState.cancelled_waiting_payment, OrderState.returned_waiting_payment)


def workflow_id(order_id: str, prefix: str = "") -> str:
    """`prefix` lets several docket installations share one Temporal namespace."""
    return f"{prefix}order-{order_id}"


@workflow.defn
class OrderWorkflow:
    """One order, from placement to completed, cancelled or returned.

    Updates (staff commands, validated against the lifecycle tables before anything is written):
      placement        answers with the order as placed (or rejected) once that is recorded
      confirm_payment  a clerk confirms an offline payment
      move_delivery    pack, mark_ready, ship, deliver one delivery
      cancel           cancel the order (refused once a delivery is on its way)
      return_goods     goods on their way came back (delivered, or brought back by the carrier)
      record_refund    a clerk refunded by hand what a cancelled or returned order owes
      retry_refund     ask the gateway again for a refund it refused
      payment_callback a gateway's verified callback (settles a payment that was processing)
    Signals (facts):
      stock_reserved   receiving stock made a waiting delivery whole
      mail_due         an operator put failed mails back to pending
    Queries:
      view             the order as the workflow last recorded it
    Timers:
      the payment deadline (cancel when it passes with the payment unconfirmed or still
      processing), the next try of a refused refund (1, 2, 4 ... minutes, at most an hour apart),
      each pre-order's
      release moment, and the return window after completion (the workflow then closes).
    Mail:
      each move's activity sends the mail it wrote; what the mail server could not take then (and
      mail an operator retries) a background loop delivers with `deliver_mail`, retried with
      backoff. The workflow closes once its mail is delivered.
    """

    def __init__(self) -> None:
        self._view: OrderView | None = None
        self._lock = asyncio.Lock()
        self._moves = 0
        self._version = 0
        self._stock_ready = False
        self._released_through: dt.datetime | None = None
        self._mail: bool | None = None  # delivers mail (not an order from before mail existed)
        self._mail_due = False
        self._closing = False
        self._charging = False
        self._refund_failures = 0
        self._refund_retry_at: dt.datetime | None = None

    # --- run ------------------------------------------------------------------------------------

    @workflow.run
    async def run(self, command: PlaceOrder) -> OrderView:
        async with self._lock:
            placed = await self._apply("place_order", PlaceOrderMove(**self._move("place"), command=command))
            if placed.state is OrderState.pending and placed.payment_flow in CHARGED_AT_PLACEMENT:
                self._charging = True  # placement answers once the gateway has
                await self._apply("charge", ChargeMove(**self._move("charge"), order_id=placed.order_id))
                self._charging = False
        mailer = asyncio.create_task(self._deliver_mail(command.order_id)) if self._mail else None
        while True:
            while not self._finished():
                version = self._version
                timeout = self._until_next_timer()

                def moved_or_stocked(seen: int = version) -> bool:
                    return self._version != seen or self._stock_ready

                try:
                    await workflow.wait_condition(moved_or_stocked, timeout=timeout)
                except TimeoutError:
                    pass
                async with self._lock:
                    await self._on_time_or_stock()
            await workflow.wait_condition(workflow.all_handlers_finished)
            if self._finished():  # a command accepted meanwhile (a late return) may have reopened it
                break
        if mailer is not None:
            self._closing = True
            await mailer
        return self.view()

    async def _deliver_mail(self, order_id: str) -> None:
        while True:
            await workflow.wait_condition(lambda: self._mail_due or self._closing)
            if not self._mail_due:
                return
            self._mail_due = False
            await workflow.execute_activity(
                "deliver_mail", DeliverMail(order_id=order_id), result_type=MailDelivered, **MAIL_OPTIONS
            )

    async def _on_time_or_stock(self) -> None:
        view, now = self.view(), workflow.now()
        if view.state in WAITING_FOR_REFUND and self._refund_retry_at and now >= self._refund_retry_at:
            self._refund_retry_at = None
            move = RetryRefundMove(**self._move("refund-retry"), order_id=view.order_id)
            await self._apply("retry_refund", move)
            return
        if view.state in UNPAID and view.payment_deadline and now >= view.payment_deadline:
            reason = (
                "payment not confirmed by the deadline"
                if view.state is OrderState.waiting_confirmation
                else "payment still processing at the deadline"
            )
            cancel = CancelOrder(order_id=view.order_id, operator_id=None, reason=reason)
            await self._apply("cancel_order", CancelOrderMove(**self._move("expire"), command=cancel))
            return
        due = self._next_release()
        stock_ready, self._stock_ready = self._stock_ready, False  # unpaid: confirming will advance
        if view.state in PAID and (stock_ready or (due is not None and due <= now)):
            if due is not None and due <= now:
                self._released_through = due
            await self._apply("advance_order", AdvanceOrder(**self._move("advance"), order_id=view.order_id))

    def _finished(self) -> bool:
        view = self.view()
        if view.state in ENDED:
            return True
        return view.state is OrderState.completed and (
            view.return_until is None or workflow.now() >= view.return_until
        )

    def _until_next_timer(self) -> dt.timedelta | None:
        view, now = self.view(), workflow.now()
        moments = []
        if view.state in WAITING_FOR_REFUND and self._refund_retry_at:
            moments.append(self._refund_retry_at)
        if view.state in UNPAID and view.payment_deadline:
            moments.append(view.payment_deadline)
        if view.state in PAID and (due := self._next_release()) is not None:
            moments.append(due)
        if view.state is OrderState.completed and view.return_until:
            moments.append(view.return_until)
        if not moments:
            return None
        return max(min(moments) - now, dt.timedelta(0))

    def _next_release(self) -> dt.datetime | None:
        pending = [
            d.release_at
            for d in self.view().deliveries
            if d.state in WAITING_FOR_DATE
            and d.release_at is not None
            and (self._released_through is None or d.release_at > self._released_through)
        ]
        return min(pending, default=None)

    # --- updates --------------------------------------------------------------------------------

    @workflow.update
    async def placement(self) -> OrderView:
        await workflow.wait_condition(lambda: self._view is not None and not self._charging)
        return self.view()

    @workflow.update
    async def confirm_payment(self, command: ConfirmPayment) -> OrderView:
        return await self._command(
            "confirm_payment", ConfirmPaymentMove(**self._move("confirm"), command=command)
        )

    @confirm_payment.validator
    def _check_confirm(self, command: ConfirmPayment) -> None:
        self._check_order(command.order_id, "confirm_payment")

    @workflow.update
    async def move_delivery(self, command: MoveDelivery) -> OrderView:
        name = f"{command.trigger}-{command.delivery_no}"
        flow = self._view.payment_flow if self._view else None
        move = DeliveryMove(**self._move(name), command=command, payment_flow=flow)
        return await self._command("move_delivery", move)

    @move_delivery.validator
    def _check_move_delivery(self, command: MoveDelivery) -> None:
        view = self._check_order(command.order_id, None)
        if not self._settled():
            return
        if view.state not in PAID:
            raise ApplicationError(
                f"order {view.order_id} is {view.state.value}: deliveries move once it is paid",
                type="Refused",
            )
        delivery = view.delivery(command.delivery_no)
        if delivery is None:
            raise ApplicationError(
                f"order {view.order_id} has no delivery {command.delivery_no}", type="NotFound"
            )
        if command.trigger == "ship" and delivery.state is DeliveryState.ready_waiting_payment:
            return  # pay per shipment: shipping a held parcel asks for its capture again
        _check(lambda: DELIVERY.dest(delivery.state, command.trigger), f"delivery {delivery.delivery_no}")

    @workflow.update
    async def cancel(self, command: CancelOrder) -> OrderView:
        return await self._command("cancel_order", CancelOrderMove(**self._move("cancel"), command=command))

    @cancel.validator
    def _check_cancel(self, command: CancelOrder) -> None:
        view = self._check_order(command.order_id, None)
        if not self._settled():
            return
        refusal = why_not_cancel(view.order_id, view.deliveries)
        if refusal:
            raise ApplicationError(refusal, type="Refused")
        _check(lambda: ORDER.dest(view.state, "cancel", ruled_out(view.deliveries)), f"order {view.order_id}")

    @workflow.update
    async def return_goods(self, command: ReturnOrder) -> OrderView:
        return await self._command("return_order", ReturnOrderMove(**self._move("return"), command=command))

    @return_goods.validator
    def _check_return(self, command: ReturnOrder) -> None:
        view = self._check_order(command.order_id, "return_goods")
        refusal = why_not_return(view.order_id, view.deliveries) if self._settled() else None
        if refusal:
            raise ApplicationError(refusal, type="Refused")

    @workflow.update
    async def record_refund(self, command: RecordRefund) -> OrderView:
        return await self._command("record_refund", RecordRefundMove(**self._move("refund"), command=command))

    @workflow.update
    async def retry_refund(self, command: RetryRefund) -> OrderView:
        self._refund_retry_at = None
        move = RetryRefundMove(
            **self._move("refund-retry"), order_id=command.order_id, operator_id=command.operator_id
        )
        return await self._command("retry_refund", move)

    @retry_refund.validator
    def _check_retry_refund(self, command: RetryRefund) -> None:
        view = self._check_order(command.order_id, None)
        if not self._settled():
            return
        if view.state not in WAITING_FOR_REFUND:
            raise ApplicationError(
                f"order {view.order_id} is {view.state.value}: no refund is waiting to be made",
                type="Refused",
            )

    @record_refund.validator
    def _check_refund(self, command: RecordRefund) -> None:
        view = self._check_order(command.order_id, None)
        if not self._settled():
            return
        if view.state not in WAITING_FOR_REFUND:
            raise ApplicationError(
                f"order {view.order_id} is {view.state.value}: no refund is waiting to be made",
                type="Refused",
            )

    @workflow.update
    async def payment_callback(self, callback: PaymentCallback) -> PaymentOutcome:
        async with self._lock:
            move = PaymentCallbackMove(
                **self._move("callback"),
                gateway=callback.gateway,
                fact=callback.fact,
                callback_id=callback.callback_id,
            )
            try:
                if workflow.patched(LOCAL_CALLBACK_PATCH):
                    moved = await workflow.execute_local_activity(
                        "apply_payment_callback", move, result_type=Moved, **ACTIVITY_OPTIONS
                    )
                else:
                    moved = await workflow.execute_activity(
                        "apply_payment_callback", move, result_type=Moved, **ACTIVITY_OPTIONS
                    )
            except ActivityError as error:
                if isinstance(error.cause, ApplicationError):
                    raise ApplicationError(error.cause.message, type=error.cause.type) from None
                raise
        self._view, self._mail_due = moved.view, self._mail_due or moved.mail_waiting
        self._note_refund(moved)
        self._version += 1
        return PaymentOutcome(outcome=moved.outcome or "", state=moved.view.state)

    @payment_callback.validator
    def _check_payment_callback(self, callback: PaymentCallback) -> None:
        self._check_order(callback.fact.order_id, None)

    @workflow.signal
    def stock_reserved(self, fact: StockReserved) -> None:
        self._stock_ready = True

    @workflow.signal
    def mail_due(self, fact: MailDue) -> None:
        self._mail_due = True

    @workflow.query
    def view(self) -> OrderView:
        if self._view is None:
            raise ApplicationError("the order is still being placed", type="NotFound")
        return self._view

    # --- moves ----------------------------------------------------------------------------------

    def _check_order(self, order_id: str, trigger: str | None) -> OrderView:
        if self._view is None:
            raise ApplicationError("the order is still being placed; try again", type="Refused")
        if order_id != self._view.order_id:
            raise ApplicationError(
                f"this is order {self._view.order_id}, not {order_id}", type="InvalidInput"
            )
        view = self._view
        if trigger is not None and self._settled():
            _check(lambda: ORDER.dest(view.state, trigger, ruled_out(view.deliveries)), f"order {order_id}")
        return view

    def _settled(self) -> bool:
        """No move is in flight. While one is, the view here is about to change (the store may have
        committed it already, and an operator seen it): a command is then let in to wait its turn,
        and the store checks it against what is committed."""
        return not self._lock.locked()

    async def _command(self, activity_name: str, move: Move) -> OrderView:
        async with self._lock:
            try:
                return await self._apply(activity_name, move)
            except ActivityError as error:
                # A refusal after acceptance fails the update, never the workflow.
                if isinstance(error.cause, ApplicationError):
                    raise ApplicationError(error.cause.message, type=error.cause.type) from None
                raise

    async def _apply(self, activity_name: str, move: Move) -> OrderView:
        if move.deliver_mail:
            moved = await workflow.execute_activity(
                activity_name, move, result_type=Moved, **ACTIVITY_OPTIONS
            )
            self._view, self._mail_due = moved.view, self._mail_due or moved.mail_waiting
            self._note_refund(moved)
        else:
            self._view = await workflow.execute_activity(
                activity_name, move, result_type=OrderView, **ACTIVITY_OPTIONS
            )
        self._version += 1
        return self._view

    def _note_refund(self, moved: Moved) -> None:
        if moved.refund_failed:  # retried 1, 2, 4 ... minutes later, at most an hour apart
            self._refund_failures += 1
            wait = min(REFUND_RETRY_FIRST * 2 ** (self._refund_failures - 1), REFUND_RETRY_MAX)
            self._refund_retry_at = workflow.now() + wait

    def _move(self, name: str) -> dict[str, Any]:
        if self._mail is None:  # decided once, at the first move: placement
            self._mail = workflow.patched(MAIL_PATCH)
        self._moves += 1
        return {
            "move_id": f"{workflow.info().workflow_id}/{self._moves}-{name}",
            "at": workflow.now(),
            "deliver_mail": self._mail,
        }


def _check(attempt: Callable[[], object], what: str) -> None:
    try:
        attempt()
    except IllegalTransition as illegal:
        raise ApplicationError(
            str(illegal).replace(illegal.lifecycle, what, 1), type="IllegalTransition"
        ) from None
