"""Money on an order: the payment operations, their results, and the payment status they add up to
(DESIGN section 3, Payments), and what docket and a gateway say to each other. Pure: the store
keeps the transactions, the adapters talk to gateways."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from docket.models.inputs import Input


class Operation(StrEnum):
    authorize = "authorize"
    reverse_authorization = "reverse_authorization"
    capture = "capture"
    authorize_capture = "authorize_capture"
    void_capture = "void_capture"
    refund = "refund"
    external_refund = "external_refund"  # made in the gateway's own panel, reported to docket


class Result(StrEnum):
    ok = "ok"
    processing = "processing"  # the gateway decides later (fraud review, a bank's confirmation)
    failed = "failed"
    manual_required = "manual_required"  # only a person can finish it (an offline refund)


class PaymentStatus(StrEnum):
    none = "none"  # nothing captured
    partial = "partial"  # some of the total captured (per shipment), net of refunds
    full = "full"  # the total captured, net of refunds
    pending = "pending"  # a payment is still processing
    refund_pending = "refund_pending"  # the last refund (or void) has not gone through


class Charge(BaseModel):
    """What docket asks of a gateway."""

    model_config = ConfigDict(frozen=True)
    operation: Operation
    shop_id: str
    order_id: str
    amount: Decimal
    currency: str
    idempotency_key: str
    token: str | None = None  # the customer's payment token (authorize, authorize_capture)
    reference: str | None = None  # the authorization or capture this operation acts on


class Answer(BaseModel):
    result: Result
    reference: str | None = None
    message: str | None = None
    # For a capture that went through: whether the gateway has settled it. A gateway that settles
    # in a daily batch answers False; until the batch runs the capture is voided, not refunded.
    settled: bool = True


class CallbackFact(Input):
    """A gateway's callback, once its signature holds: a payment fact about one order."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Bounded as the store's columns are: longer is refused (422), not failed on storing (503).
    event_id: str = Field(max_length=200)
    shop_id: str = Field(max_length=64)
    order_id: str = Field(max_length=64)
    operation: Operation
    amount: Decimal
    currency: str
    result: Result
    reference: str | None = Field(default=None, max_length=200)
    idempotency_key: str | None = Field(default=None, max_length=200)
    # For a capture: False while the gateway's batch has not settled it, True once it has (a
    # settlement callback); not stated: an ok capture is settled.
    settled: bool | None = None


CAPTURES = (Operation.capture, Operation.authorize_capture)
REFUNDS = (Operation.refund, Operation.external_refund)


@dataclass(frozen=True)
class Txn:
    operation: Operation
    amount: Decimal
    result: Result


def captured(txns: Iterable[Txn]) -> Decimal:
    """Captured and not voided."""
    total = Decimal("0.00")
    for t in txns:
        if t.result is Result.ok and t.operation in CAPTURES:
            total += t.amount
        elif t.result is Result.ok and t.operation is Operation.void_capture:
            total -= t.amount
    return total


def refunded(txns: Iterable[Txn]) -> Decimal:
    return sum((t.amount for t in txns if t.result is Result.ok and t.operation in REFUNDS), Decimal("0.00"))


def refundable(txns: Iterable[Txn]) -> Decimal:
    """What may still be refunded: refunds never exceed what was captured."""
    txns = list(txns)
    return captured(txns) - refunded(txns)


def payment_status(total: Decimal, txns: Iterable[Txn]) -> PaymentStatus:
    txns = list(txns)
    giving_back = [t for t in txns if t.operation in (Operation.refund, Operation.void_capture)]
    if giving_back and giving_back[-1].result is not Result.ok:  # a refused void is followed by a refund
        return PaymentStatus.refund_pending
    if any(t.result is Result.processing for t in txns if t.operation in (*CAPTURES, Operation.authorize)):
        return PaymentStatus.pending
    net = refundable(txns)
    if net <= 0:
        return PaymentStatus.none
    return PaymentStatus.full if net >= total else PaymentStatus.partial
