"""Payment transactions: written in the move that makes them, once per idempotency key."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from docket.models.payments import Operation, Result, Txn, captured, payment_status, refunded
from docket.models.schemas import PaymentSummary, PaymentView
from docket.store import queries
from docket.store.stock import MoveContext
from docket.store.tables import Order, PaymentTransaction

_BY_KEY = select(PaymentTransaction).where(PaymentTransaction.key == bindparam("key"))  # built once


def by_key(session: Session, key: str) -> PaymentTransaction | None:
    """The transaction recorded under an idempotency key."""
    return session.scalar(_BY_KEY, {"key": key})


def record(
    session: Session,
    *,
    key: str,
    order: Order,
    gateway: str,
    operation: Operation,
    amount: Decimal,
    result: Result,
    ctx: MoveContext,
    delivery_no: int | None = None,
    settled: bool = False,
    reference: str | None = None,
) -> PaymentTransaction:
    """The transaction of `key`: recorded now, or as it was recorded the first time."""
    found = by_key(session, key)
    if found is not None:
        return found
    txn = PaymentTransaction(
        key=key,
        order_id=order.order_id,
        delivery_no=delivery_no,
        at=ctx.at,
        gateway=gateway,
        operation=operation,
        amount=amount,
        currency=order.currency,
        result=result,
        settled=settled,
        reference=reference,
        operator_id=ctx.operator_id,
        note=ctx.note,
    )
    session.add(txn)
    return txn


def transactions(session: Session, order_id: str) -> list[PaymentView]:
    query = (
        select(PaymentTransaction)
        .where(PaymentTransaction.order_id == order_id)
        .order_by(PaymentTransaction.transaction_id)
    )
    return [
        PaymentView(
            transaction_id=t.transaction_id,
            at=queries.as_utc(t.at),  # type: ignore[arg-type]
            delivery_no=t.delivery_no,
            gateway=t.gateway,
            operation=t.operation,
            amount=t.amount,
            currency=t.currency,
            result=t.result,
            settled=t.settled,
            reference=t.reference,
            operator_id=t.operator_id,
            note=t.note,
        )
        for t in session.scalars(query)
    ]


def summary(total: Decimal, currency: str, views: list[PaymentView]) -> PaymentSummary:
    txns = [Txn(v.operation, v.amount, v.result) for v in views]
    return PaymentSummary(
        status=payment_status(total, txns),
        captured=captured(txns),
        refunded=refunded(txns),
        currency=currency,
    )
