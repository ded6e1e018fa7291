"""A move's activity run again under its move id, after it was applied (its worker stopped before
it reported, so Temporal runs it again): it answers what the move did the first time and changes
nothing more, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select

from docket.activities.mail import Mailer
from docket.activities.orders import OrderActivities
from docket.adapters.mail import MaildirTransport
from docket.models.lifecycles import DeliveryState, OrderState
from docket.models.messages import AdvanceOrder, Moved, StockChange
from docket.models.schemas import ConfirmPayment, ReceiveStock, StockMoveKind, StockReceived
from docket.rendering import Renderer
from docket.store import catalogue, moves, stock
from docket.store.direct import writing
from docket.store.engine import SessionFactory, engine_of, make_session_factory
from docket.store.tables import AppliedMove, AuditRow, OutboxRow, PaymentTransaction, StockMovement
from tests.catalogue import catalogue_for_tests
from tests.orders import confirmation, place

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def sessions(engine: Engine) -> SessionFactory:
    factory = make_session_factory(engine)
    with factory.begin() as session:
        catalogue.load(session, catalogue_for_tests(widget_on_hand=0, widget_backorder=True), NOW)
    return factory


@pytest.fixture
def activities(sessions: SessionFactory, tmp_path: Path) -> OrderActivities:
    mailer = Mailer(sessions, Renderer("docket@shop.test"), MaildirTransport(tmp_path / "mail"))
    return OrderActivities(sessions, mailer, {})


def count(sessions: SessionFactory, model: type, *where: object) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_a_confirmation_run_again_answers_as_the_first_and_pays_once(
    sessions: SessionFactory, activities: OrderActivities
) -> None:
    """Run again, the confirmation finds the order moved on: refused by the lifecycle, it answers
    with what the first run recorded."""
    with writing(engine_of(sessions)) as tx:
        moves.place_order(tx, place("o-1", ("GADGET", 1)), "o-1/1", NOW)
    confirm = confirmation("o-1", "o-1/2", NOW)

    first = activities.confirm_payment(confirm)
    again = activities.confirm_payment(confirm)

    assert isinstance(first, Moved) and first.view.state is OrderState.in_progress
    assert isinstance(again, Moved) and again.view == first.view
    assert count(sessions, AuditRow, AuditRow.trigger == "confirm_payment") == 1
    assert count(sessions, PaymentTransaction) == 1, "captured once"
    assert count(sessions, OutboxRow, OutboxRow.template_key == "order_confirmed") == 1


def test_a_receipt_run_again_is_rolled_back_whole_and_answers_as_the_first(
    sessions: SessionFactory, activities: OrderActivities
) -> None:
    """Nothing refuses a receipt made twice: run again, it would take the goods in again and hand
    them to the next waiting order. The move's key, taken by the first run, rolls all of that back."""
    for n in (1, 2):
        with writing(engine_of(sessions)) as tx:
            moves.place_order(tx, place(f"o-{n}", ("WIDGET", 3)), f"o-{n}/1", NOW)
            moves.confirm_payment(tx, ConfirmPayment(order_id=f"o-{n}", operator_id="alice"), f"o-{n}/2", NOW)
    receipt = StockChange(
        move_id="stock/DN-1",
        at=NOW,
        deliver_mail=False,
        command=ReceiveStock(
            reference="DN-1", warehouse_id="north", sku="WIDGET", quantity=3, operator_id="alice"
        ),
    )

    first = activities.change_stock(receipt)
    again = activities.change_stock(receipt)

    assert isinstance(first, StockReceived) and [w.order_id for w in first.woken] == ["o-1"]
    assert again == first
    with sessions() as session:
        [level] = stock.levels(session, "north", "WIDGET")
        assert stock.verify(session).ok
    assert (level.on_hand, level.reserved) == (3, 3), "received once, reserved for the oldest order"
    receipts = (StockMovement.sku == "WIDGET", StockMovement.kind == StockMoveKind.receive.value)
    assert count(sessions, StockMovement, *receipts) == 1
    assert count(sessions, AppliedMove, AppliedMove.move_id == "stock/DN-1") == 1


def test_advancing_run_again_allocates_once(sessions: SessionFactory, activities: OrderActivities) -> None:
    """Advancing finds nothing left to move when run again: the same answer, one allocation."""
    with writing(engine_of(sessions)) as tx:
        moves.place_order(tx, place("o-1", ("WIDGET", 2)), "o-1/1", NOW)
        moves.confirm_payment(tx, ConfirmPayment(order_id="o-1", operator_id="alice"), "o-1/2", NOW)
        stock.receive(tx, "north", "WIDGET", 2, StockMoveKind.receive, stock.MoveContext(at=NOW))
    advance = AdvanceOrder(move_id="o-1/3", at=NOW, deliver_mail=True, order_id="o-1")

    first = activities.advance_order(advance)
    again = activities.advance_order(advance)

    assert isinstance(first, Moved) and first.view.deliveries[0].state is DeliveryState.allocated
    assert isinstance(again, Moved) and again.view == first.view
    allocations = StockMovement.kind == StockMoveKind.allocate.value
    assert count(sessions, StockMovement, allocations) == 1
    assert count(sessions, AuditRow, AuditRow.trigger == "allocate") == 1
