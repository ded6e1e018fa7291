"""Payment transactions: written in the move that makes them, once per idempotency key."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import bindparam, update

from docket.models.payments import Operation, Result, Txn, captured, payment_status, refunded
from docket.models.schemas import PaymentSummary, PaymentView
from docket.store import queries
from docket.store.direct import Tx
from docket.store.rows import OrderRow, PaymentRow, insert_rows, select_rows, set_from, values_of
from docket.store.stock import MoveContext
from docket.store.tables import PaymentTransaction

_BY_KEY = select_rows(PaymentTransaction, PaymentRow).where(PaymentTransaction.key == bindparam("key"))
_BY_ID = select_rows(PaymentTransaction, PaymentRow).where(
    PaymentTransaction.transaction_id == bindparam("id")
)
_OF_ORDER = (
    select_rows(PaymentTransaction, PaymentRow)
    .where(PaymentTransaction.order_id == bindparam("order_id"))
    .order_by(PaymentTransaction.transaction_id)
)
_INSERT = insert_rows(PaymentTransaction, PaymentRow, leave_out=("transaction_id",)).returning(
    PaymentTransaction.transaction_id
)
_ANSWERED = (
    update(PaymentTransaction)
    .where(PaymentTransaction.transaction_id == bindparam("id"))
    .values(set_from(PaymentTransaction, "result", "settled", "reference", "note"))
)


def by_key(tx: Tx, key: str) -> PaymentRow | None:
    """The transaction recorded under an idempotency key."""
    found = tx.first(_BY_KEY, key=key)
    return PaymentRow(*found) if found else None


def by_id(tx: Tx, transaction_id: int) -> PaymentRow | None:
    found = tx.first(_BY_ID, id=transaction_id)
    return PaymentRow(*found) if found else None


def record(
    tx: Tx,
    *,
    key: str,
    order: OrderRow,
    gateway: str,
    operation: Operation,
    amount: Decimal,
    result: Result,
    ctx: MoveContext,
    delivery_no: int | None = None,
    settled: bool = False,
    reference: str | None = None,
) -> PaymentRow:
    """The transaction of `key`: recorded now, or as it was recorded the first time."""
    found = by_key(tx, key)
    if found is not None:
        return found
    txn = PaymentRow(
        transaction_id=0,
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
    txn.transaction_id = tx.scalar(_INSERT, **values_of(txn))
    return txn


def save_answer(tx: Tx, txn: PaymentRow) -> None:
    """What the gateway (or a callback) answered of a transaction: its result, whether it is
    settled, its reference and note."""
    tx.run(
        _ANSWERED,
        id=txn.transaction_id,
        result=txn.result,
        settled=txn.settled,
        reference=txn.reference,
        note=txn.note,
    )


def transactions(tx: Tx, order_id: str) -> list[PaymentView]:
    return [
        PaymentView(
            transaction_id=t.transaction_id,
            at=queries.as_utc(t.at),
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
        for t in (PaymentRow(*found) for found in tx.all(_OF_ORDER, order_id=order_id))
    ]


def summary(total: Decimal, currency: str, views: list[PaymentView]) -> PaymentSummary:
    txns = [Txn(v.operation, v.amount, v.result) for v in views]
    return PaymentSummary(
        status=payment_status(total, txns),
        captured=captured(txns),
        refunded=refunded(txns),
        currency=currency,
    )
