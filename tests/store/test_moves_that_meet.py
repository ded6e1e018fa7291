"""Moves that meet on PostgreSQL's row locks, each made to meet by a transaction that holds the
rows they want while they queue behind it.

Two attempts of one move: Temporal retries a move whose attempt outlived its time-out while that
attempt still runs (a long lock wait, a worker cut off from the server). Both must answer what the
move did, and the move must happen once. A cancel and a receipt of the stock its back order waits
for: whichever goes first, nothing stays reserved for the cancelled order.

On SQLite a write transaction takes the database's one write lock at BEGIN, before it reads
anything, so none of this can interleave there."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, Select, func, select, text

from docket.activities.mail import Mailer
from docket.activities.orders import OrderActivities
from docket.adapters.mail import MaildirTransport
from docket.models.lifecycles import OrderState
from docket.models.messages import Move, Moved, PlaceOrderMove
from docket.models.schemas import CancelOrder, StockMoveKind
from docket.rendering import Renderer
from docket.store import catalogue, moves, stock
from docket.store.direct import writing
from docket.store.engine import SessionFactory, engine_of, make_session_factory
from docket.store.stock import MoveContext
from docket.store.tables import AuditRow, Order, OrderLine, OutboxRow, PaymentTransaction, Stock
from tests.catalogue import catalogue_for_tests
from tests.orders import confirmation, place

pytestmark = pytest.mark.postgres
NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)
M = TypeVar("M", bound=Move)


def test_a_second_attempt_that_finds_the_move_done_answers_what_it_did(
    postgres_engine: Engine, tmp_path: Path
) -> None:
    """Confirming twice is refused; the second attempt of one confirmation is not."""
    sessions = _shop(postgres_engine)
    with writing(engine_of(sessions)) as tx:
        moves.place_order(tx, place("o-1", ("WIDGET", 2)), "o-1/1", NOW)
    confirm = confirmation("o-1", "o-1/2", NOW)
    held = select(Order).where(Order.order_id == "o-1").with_for_update()

    answers = _two_attempts_at_once(
        postgres_engine, held, _activities(sessions, tmp_path).confirm_payment, confirm
    )

    assert all(isinstance(a, Moved) and a.view.state is OrderState.in_progress for a in answers)
    assert answers[0].view == answers[1].view
    assert _counts(sessions, "confirm_payment", "order_confirmed") == (1, 1, 1)


def test_a_second_attempt_that_writes_the_same_order_answers_what_the_first_did(
    postgres_engine: Engine, tmp_path: Path
) -> None:
    """Placing: both attempts find no order, then queue on the stock they reserve from."""
    sessions = _shop(postgres_engine)
    placing = PlaceOrderMove(move_id="o-1/1", at=NOW, deliver_mail=True, command=place("o-1", ("WIDGET", 2)))
    held = select(Stock).where(Stock.sku == "WIDGET").with_for_update()

    answers = _two_attempts_at_once(
        postgres_engine, held, _activities(sessions, tmp_path).place_order, placing
    )

    assert all(isinstance(a, Moved) and a.view.state is OrderState.waiting_confirmation for a in answers)
    assert answers[0].view == answers[1].view
    assert _counts(sessions, "place", "order_received") == (1, 0, 1)
    with sessions() as session:
        reserved = session.scalar(select(func.sum(Stock.reserved)).where(Stock.sku == "WIDGET"))
    assert reserved == 2, "reserved once"


def test_a_cancel_that_meets_a_receipt_releases_what_the_receipt_reserved_for_its_back_order(
    postgres_engine: Engine,
) -> None:
    """The receipt holds the stock and reserves for the waiting order while the cancel, which has
    read the order's lines already, waits for that stock: it must release what is reserved now."""
    sessions = _shop(postgres_engine, widget_on_hand=0, widget_backorder=True)
    with writing(engine_of(sessions)) as tx:
        waiting = moves.place_order(tx, place("o-1", ("WIDGET", 2)), "o-1/1", NOW)
    assert waiting.deliveries[0].lines[0].reserved == 0

    def receive() -> None:
        with writing(engine_of(sessions)) as tx:
            stock.receive(tx, "north", "WIDGET", 2, StockMoveKind.receive, MoveContext(at=NOW))

    def cancel() -> None:
        with writing(engine_of(sessions)) as tx:
            moves.cancel_order(
                tx, CancelOrder(order_id="o-1", operator_id="alice", reason="changed mind"), "o-1/2", NOW
            )

    with ThreadPoolExecutor(2) as pool, postgres_engine.connect() as holder:  # released first
        holder.execute(select(Stock).where(Stock.sku == "WIDGET").with_for_update())
        received = pool.submit(receive)
        _wait_for_lock_waiters(postgres_engine, 1, received)
        cancelled = pool.submit(cancel)  # queues behind the receipt
        _wait_for_lock_waiters(postgres_engine, 2, cancelled)
        holder.rollback()
    received.result(), cancelled.result()

    with sessions() as session:
        report = stock.verify(session)
        [level] = stock.levels(session, "north", "WIDGET")
        line = session.get_one(OrderLine, ("o-1", 1))
    assert report.ok, report.problems
    assert (level.on_hand, level.reserved, line.reserved) == (2, 0, 0)


def _shop(engine: Engine, **options: Any) -> SessionFactory:
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        catalogue.load(session, catalogue_for_tests(**options), NOW)
    return sessions


def _activities(sessions: SessionFactory, tmp_path: Path) -> OrderActivities:
    mailer = Mailer(sessions, Renderer("docket@shop.test"), MaildirTransport(tmp_path / "mail"))
    return OrderActivities(sessions, mailer, {})


def _two_attempts_at_once(
    engine: Engine, held: Select[Any], activity: Callable[[M], Any], move: M
) -> list[Any]:
    """Run `activity` twice at once while another transaction holds the rows `held` selects: both
    attempts start the move, then queue behind that transaction."""
    with ThreadPoolExecutor(2) as pool, engine.connect() as holder:  # released first
        holder.execute(held)
        attempts = [pool.submit(activity, move) for _ in range(2)]
        _wait_for_lock_waiters(engine, 2, *attempts)
        holder.rollback()
    return [attempt.result() for attempt in attempts]


def _counts(sessions: SessionFactory, trigger: str, template_key: str) -> tuple[int, int, int]:
    """(audit rows of the move, payment transactions, mails of the template)."""
    with sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(AuditRow).where(AuditRow.trigger == trigger)),
            session.scalar(select(func.count()).select_from(PaymentTransaction)),
            session.scalar(
                select(func.count()).select_from(OutboxRow).where(OutboxRow.template_key == template_key)
            ),
        )


def _wait_for_lock_waiters(engine: Engine, count: int, *running: Future[Any]) -> None:
    """Until `count` sessions of this database wait for a row lock (10 s at most), or one of the
    moves `running` ended without waiting."""
    deadline = time.monotonic() + 10
    query = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while time.monotonic() < deadline:
        with engine.connect() as probe:  # a transaction of its own: the view is read afresh
            if probe.scalar(query) >= count:
                return
        if any(move.done() for move in running):
            return  # its answer (an error, most likely) says why
        time.sleep(0.02)
    raise AssertionError(f"{count} moves never queued behind the held rows")
