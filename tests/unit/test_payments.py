"""What the payment transactions of an order add up to."""

from __future__ import annotations

from decimal import Decimal

from docket.models.payments import Operation as Op
from docket.models.payments import PaymentStatus, Txn, captured, payment_status, refundable, refunded
from docket.models.payments import Result as R

TOTAL = Decimal("100.00")


def txn(op: Op, amount: str, result: R = R.ok) -> Txn:
    return Txn(op, Decimal(amount), result)


def test_nothing_captured_is_none_and_an_authorization_alone_captures_nothing() -> None:
    assert payment_status(TOTAL, []) is PaymentStatus.none
    assert payment_status(TOTAL, [txn(Op.authorize, "100.00")]) is PaymentStatus.none


def test_captures_add_up_to_partial_then_full() -> None:
    first = [txn(Op.authorize, "100.00"), txn(Op.capture, "40.00")]
    assert payment_status(TOTAL, first) is PaymentStatus.partial
    assert payment_status(TOTAL, [*first, txn(Op.capture, "60.00")]) is PaymentStatus.full


def test_a_failed_capture_captures_nothing_and_a_processing_one_is_pending() -> None:
    assert payment_status(TOTAL, [txn(Op.authorize_capture, "100.00", R.failed)]) is PaymentStatus.none
    assert payment_status(TOTAL, [txn(Op.authorize_capture, "100.00", R.processing)]) is PaymentStatus.pending


def test_a_voided_capture_and_refunds_come_off_what_was_captured() -> None:
    txns = [txn(Op.capture, "100.00"), txn(Op.void_capture, "30.00"), txn(Op.refund, "20.00")]
    assert (captured(txns), refunded(txns), refundable(txns)) == (
        Decimal("70.00"),
        Decimal("20.00"),
        Decimal("50.00"),
    )
    assert payment_status(TOTAL, txns) is PaymentStatus.partial
    everything_back = [*txns, txn(Op.external_refund, "50.00")]
    assert refundable(everything_back) == 0
    assert payment_status(TOTAL, everything_back) is PaymentStatus.none


def test_a_refund_that_did_not_go_through_is_refund_pending_until_one_does() -> None:
    txns = [txn(Op.capture, "100.00"), txn(Op.refund, "100.00", R.failed)]
    assert payment_status(TOTAL, txns) is PaymentStatus.refund_pending
    assert (
        payment_status(TOTAL, [*txns, txn(Op.refund, "100.00", R.manual_required)])
        is PaymentStatus.refund_pending
    )
    assert payment_status(TOTAL, [*txns, txn(Op.refund, "100.00")]) is PaymentStatus.none


def test_a_voided_capture_is_no_longer_captured_and_a_void_on_its_way_is_refund_pending() -> None:
    capture = txn(Op.authorize_capture, "100.00")
    voiding = [capture, txn(Op.void_capture, "100.00", R.processing)]
    assert payment_status(TOTAL, voiding) is PaymentStatus.refund_pending
    voided = [capture, txn(Op.void_capture, "100.00")]
    assert (captured(voided), refunded(voided), refundable(voided)) == (0, 0, 0)
    assert payment_status(TOTAL, voided) is PaymentStatus.none
    refused_then_refunded = [capture, txn(Op.void_capture, "100.00", R.failed), txn(Op.refund, "100.00")]
    assert payment_status(TOTAL, refused_then_refunded) is PaymentStatus.none
