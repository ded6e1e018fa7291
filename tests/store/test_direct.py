"""The write path's statements run on the driver's cursor (store.direct): what they write reads back
the same through the ORM and the other way round, on SQLite and PostgreSQL; the driver's errors
reach docket as SQLAlchemy raises them; a transaction that fails leaves nothing."""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import StaticPool

from docket.models.lifecycles import OrderState
from docket.models.payments import Operation, Result
from docket.models.schemas import PaymentFlow, StockMoveKind
from docket.store import moves, payments, stock
from docket.store.direct import Tx, WouldWait, reading, without_waiting, writing
from docket.store.engine import BUSY_TIMEOUT_MS, SessionFactory, make_engine, write_lock
from docket.store.migrate import upgrade
from docket.store.rows import order_row
from docket.store.tables import Order, PaymentTransaction, StockMovement
from tests.catalogue import catalogued_sessions
from tests.orders import place

NOW = dt.datetime(2026, 11, 23, 9, 0, 30, 123456, tzinfo=dt.UTC)


@pytest.fixture
def sessions(engine: Engine) -> SessionFactory:
    return catalogued_sessions(engine, NOW)


def test_an_order_written_on_the_cursor_reads_back_the_same_through_the_orm(
    engine: Engine, sessions: SessionFactory
) -> None:
    with writing(engine) as tx:
        view = moves.place_order(tx, place("o-1", ("WIDGET", 3)), "m1", NOW)
    with sessions() as session:
        order = session.get_one(Order, "o-1")
        movement = session.query(StockMovement).filter_by(order_id="o-1").one()
    assert (order.state, order.payment_flow) == (OrderState.waiting_confirmation, PaymentFlow.offline)
    assert (order.total, view.total) == (Decimal("28.50"), Decimal("28.50"))
    assert order.placed_at.replace(tzinfo=order.placed_at.tzinfo or dt.UTC) == NOW  # to the microsecond
    assert order.shipping_address["city"] == "Berlin"
    assert (movement.kind, movement.reserved_delta) == (StockMoveKind.reserve, 3)


def test_a_transaction_the_orm_wrote_reads_back_the_same_on_the_cursor(
    engine: Engine, sessions: SessionFactory
) -> None:
    with writing(engine) as tx:
        moves.place_order(tx, place("o-1", ("WIDGET", 1)), "m1", NOW)
    with sessions.begin() as session:
        session.add(
            PaymentTransaction(
                key="k-1",
                order_id="o-1",
                at=NOW,
                gateway="sandbox",
                operation=Operation.void_capture,
                amount=Decimal("1234567.89"),
                currency="EUR",
                result=Result.manual_required,
                settled=False,
                note="ünïcode",
            )
        )
    with reading(engine) as tx:
        txn = payments.by_key(tx, "k-1")
        order = order_row(tx, "o-1")
    assert txn is not None and order is not None
    assert (txn.operation, txn.result, txn.settled) == (Operation.void_capture, Result.manual_required, False)
    assert (txn.amount, txn.note, txn.reference) == (Decimal("1234567.89"), "ünïcode", None)
    assert txn.at.replace(tzinfo=txn.at.tzinfo or dt.UTC) == NOW
    assert order.payment_deadline is not None and order.return_until is None


def test_a_duplicate_key_is_raised_as_sqlalchemy_raises_it_and_the_move_leaves_nothing(
    engine: Engine, sessions: SessionFactory
) -> None:
    with writing(engine) as tx:
        moves.place_order(tx, place("o-1", ("WIDGET", 1)), "m1", NOW)
    with pytest.raises(IntegrityError), writing(engine) as tx:
        moves.place_order(tx, place("o-2", ("WIDGET", 2)), "m2", NOW)  # reserves 2 more
        tx.run(_INSERT_PAYMENT, **_payment("k-1"))
        tx.run(_INSERT_PAYMENT, **_payment("k-1"))  # the same idempotency key again
    with sessions() as session:
        [level] = stock.levels(session, "north", "WIDGET")
        assert session.get(Order, "o-2") is None
    assert level.reserved == 1, "the failed transaction was rolled back whole"


def test_stock_that_would_go_below_what_is_reserved_is_refused_by_the_database(
    engine: Engine, sessions
) -> None:  # type: ignore[no-untyped-def]
    """The CHECK constraints hold under the cursor's statements too: the last guard against
    overselling, whatever a move computed."""
    with writing(engine) as tx:
        moves.place_order(tx, place("o-1", ("WIDGET", 8)), "m1", NOW)
    with pytest.raises(IntegrityError), writing(engine) as tx:
        [locked] = stock.lock_stock(tx, [("north", "WIDGET")]).values()
        stock.record(tx, locked, StockMoveKind.adjust, stock.MoveContext(at=NOW), on_hand=-5)
    with sessions() as session:
        assert stock.verify(session).ok


def test_a_read_on_a_session_sees_what_that_session_wrote(engine: Engine, sessions: SessionFactory) -> None:
    """`Tx.of` runs on the session's own connection and transaction: it sees what the session has
    written and not yet committed."""
    with writing(engine) as tx:
        moves.place_order(tx, place("o-1", ("WIDGET", 1)), "m1", NOW)
    with sessions.begin() as session:
        session.add(PaymentTransaction(**_payment("k-1")))
        session.flush()
        seen = payments.by_key(Tx.of(session), "k-1")
        session.rollback()
    with reading(engine) as tx:
        after = payments.by_key(tx, "k-1")
    assert seen is not None and seen.amount == Decimal("9.50")
    assert after is None


_INSERT_PAYMENT = payments._INSERT


def _payment(key: str) -> dict[str, object]:
    return {
        "key": key,
        "order_id": "o-1",
        "delivery_no": None,
        "at": NOW,
        "gateway": "offline",
        "operation": Operation.capture,
        "amount": Decimal("9.50"),
        "currency": "EUR",
        "result": Result.ok,
        "settled": True,
        "reference": None,
        "operator_id": None,
        "note": None,
    }


def test_a_write_that_must_not_wait_gives_way_to_a_writer_elsewhere_and_writes_nothing(
    tmp_path: Path,
) -> None:
    """A move run on the worker's loop writes `without_waiting`: with the write lock held by
    another process, or by another thread of this one, it raises WouldWait before it began, and
    the connection goes on waiting for the lock as usual afterwards."""
    engine = make_engine(f"sqlite:///{tmp_path / 'docket.db'}", poolclass=StaticPool)  # one connection
    upgrade(engine)
    catalogued_sessions(engine, NOW)

    def place_one(order_id: str) -> None:
        with writing(engine) as tx:
            moves.place_order(tx, place(order_id, ("WIDGET", 1)), f"m-{order_id}", NOW)

    other = sqlite3.connect(tmp_path / "docket.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with without_waiting(), pytest.raises(WouldWait, match="another process is writing"):
        place_one("o-1")
    other.rollback()
    with write_lock(engine), without_waiting(), pytest.raises(WouldWait, match="another thread"):
        place_one("o-1")

    with reading(engine) as tx:
        assert order_row(tx, "o-1") is None
    busy = engine.raw_connection()
    try:
        assert busy.driver_connection.execute("PRAGMA busy_timeout").fetchone() == (BUSY_TIMEOUT_MS,)
    finally:
        busy.close()
    with without_waiting():
        place_one("o-1")  # the lock is free: written at once
    with reading(engine) as tx:
        assert order_row(tx, "o-1").state is OrderState.waiting_confirmation  # type: ignore[union-attr]
    other.close()
    engine.dispose()
