"""What workflows hand to activities and to each other: a command plus the move's identity.

`move_id` is made once by the workflow and reused on every retry: the store applies a move id at
most once. `at` is the workflow's clock, so durable timers and the store agree on what time it is."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict

from docket.models.lifecycles import OrderState
from docket.models.payments import CallbackFact
from docket.models.schemas import (
    AdjustStock,
    CancelOrder,
    ConfirmPayment,
    MoveDelivery,
    OrderView,
    PaymentFlow,
    PlaceOrder,
    ReceiveStock,
    RecordRefund,
    ReturnOrder,
)


class Move(BaseModel):
    """`deliver_mail`: the workflow wants the move's mail sent right after it and a `Moved` back
    (orders placed before mail delivery existed leave it false and get the bare `OrderView`)."""

    model_config = ConfigDict(frozen=True)
    move_id: str
    at: dt.datetime
    deliver_mail: bool = False


class Moved(BaseModel):
    """A move's result: the order as it now is, and whether some of its mail must wait (the mail
    server could not take it now); the workflow then delivers it in the background, with backoff.
    `outcome`: what the move did, in words, when its caller is told (a gateway's callback)."""

    view: OrderView
    mail_waiting: bool = False
    outcome: str | None = None
    refund_failed: bool = False  # the gateway refused a refund: the workflow retries it later


class ChargeMove(Move):
    """Charge the order's total through the shop's gateway (full prepayment)."""

    order_id: str


class RetryRefundMove(Move):
    """Ask again for the refund a cancelled or returned order still waits for: asked by an
    operator, or by the workflow's timer (no operator)."""

    order_id: str
    operator_id: str | None = None


class PaymentCallbackMove(Move):
    gateway: str
    fact: CallbackFact
    callback_id: int | None = None  # the stored callback, marked processed in the move's transaction


class PaymentCallback(BaseModel):
    """A gateway's verified callback, handed to the order's workflow."""

    model_config = ConfigDict(frozen=True)
    gateway: str
    fact: CallbackFact
    callback_id: int | None = None  # as stored in the inbox (None in histories from before)


class PaymentOutcome(BaseModel):
    outcome: str
    state: OrderState


class PlaceOrderMove(Move):
    command: PlaceOrder


class ConfirmPaymentMove(Move):
    command: ConfirmPayment


class DeliveryMove(Move):
    command: MoveDelivery
    # The order's payment flow, which never changes after placement, as the workflow knows it: a
    # shipment paid per shipment is captured first. None from a workflow that did not say: read.
    payment_flow: PaymentFlow | None = None


class CancelOrderMove(Move):
    command: CancelOrder


class ReturnOrderMove(Move):
    command: ReturnOrder


class RecordRefundMove(Move):
    command: RecordRefund


class AdvanceOrder(Move):
    """Take every delivery as far as payment, dates and stock allow."""

    order_id: str


class StockChange(Move):
    command: ReceiveStock | AdjustStock
    workflow_id_prefix: str = ""


class StockReserved(BaseModel):
    """Fact (signal): stock was set aside for a waiting delivery until it is whole."""

    delivery_no: int
    reference: str


class DeliverMail(BaseModel):
    """Deliver every pending mail of one order."""

    model_config = ConfigDict(frozen=True)
    order_id: str


class MailDelivered(BaseModel):
    sent: int = 0
    failed: int = 0  # for good: recorded on the row and reported to the shop's admins


class MailDue(BaseModel):
    """Mails of the order were put back to pending (an operator's retry): deliver them."""

    model_config = ConfigDict(frozen=True)
    outbox_ids: list[int] = []
