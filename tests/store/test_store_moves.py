"""The store's guarded write path and ledger, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, func, select, update

from docket.models.errors import IllegalTransition, Refused
from docket.models.lifecycles import DeliveryState, OrderState
from docket.models.payments import Answer, Result
from docket.models.schemas import CancelOrder, ConfirmPayment, RecordRefund, StockMoveKind
from docket.store import catalogue, charges, moves, queries, stock
from docket.store.direct import Tx, writing
from docket.store.engine import engine_of, make_session_factory
from docket.store.migrate import current_revision
from docket.store.stock import MoveContext
from docket.store.tables import AuditRow, Base, Delivery, OutboxRow, Stock
from tests.catalogue import catalogue_for_tests
from tests.orders import place

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def sessions(engine: Engine, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    factory = make_session_factory(engine)
    options = getattr(request, "param", {})
    with factory.begin() as session:
        catalogue.load(session, catalogue_for_tests(**options), NOW)
    return factory


def test_the_schema_comes_from_the_migrations(engine: Engine) -> None:
    assert current_revision(engine) == "0006"
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == [], "the migrations and store/tables.py disagree"


def test_placing_reserves_stock_and_writes_audit_and_outbox_in_one_go(sessions) -> None:  # type: ignore[no-untyped-def]
    with writing(engine_of(sessions)) as tx:
        view = moves.place_order(tx, place("o-1", ("WIDGET", 4)), "m1", NOW)
    assert view.state is OrderState.waiting_confirmation
    assert view.deliveries[0].lines[0].reserved == 4
    with sessions() as s:
        [level] = stock.levels(s, "north", "WIDGET")
        moves_seen = [a.trigger for a in s.scalars(select(AuditRow).order_by(AuditRow.audit_id))]
        mails = {(m.recipient, m.template_key) for m in s.scalars(select(OutboxRow))}
    assert (level.on_hand, level.reserved) == (10, 4)
    assert moves_seen == ["place", "reserve", "await_confirmation"]
    assert mails == {
        ("ada@example.test", "order_received"),
        ("admin@alpha.test", "new_order"),
        ("admin@alpha.test", "order_awaiting_confirmation"),
    }
    with sessions() as s:
        received = s.scalars(select(OutboxRow).where(OutboxRow.template_key == "order_received")).one()
    [line] = received.data["lines"]
    assert (line["sku"], line["name"], line["quantity"]) == ("WIDGET", "Widget", 4)
    assert (line["unit_price"], line["amount"], received.data["currency"]) == ("9.50", "38.00", "EUR")
    assert (received.data["total"], received.data["currency"]) == ("38.00", "EUR")


def test_a_rejected_order_is_recorded_with_its_reason_and_reserves_nothing(sessions) -> None:  # type: ignore[no-untyped-def]
    with writing(engine_of(sessions)) as tx:
        view = moves.place_order(tx, place("o-1", ("GADGET", 1), ("WIDGET", 11)), "m1", NOW)
    assert view.state is OrderState.rejected
    assert "WIDGET: 11 ordered, 10 available" in (view.rejection or "")
    with sessions() as s:
        assert all(lvl.reserved == 0 for lvl in stock.levels(s))


def test_placing_the_same_order_id_again_returns_the_first_result(sessions) -> None:  # type: ignore[no-untyped-def]
    with writing(engine_of(sessions)) as tx:
        first = moves.place_order(tx, place("o-1", ("WIDGET", 4)), "m1", NOW)
    with writing(engine_of(sessions)) as tx:
        again = moves.place_order(tx, place("o-1", ("WIDGET", 9)), "m2", NOW)
    assert again == first
    with sessions() as s:
        assert (stock.levels(s, "north", "WIDGET"))[0].reserved == 4


def test_received_stock_goes_to_the_oldest_waiting_back_order_first(sessions) -> None:  # type: ignore[no-untyped-def]
    for n in range(3):
        with writing(engine_of(sessions)) as tx:
            moves.place_order(tx, place(f"o-{n}", ("GADGET", 2)), f"m{n}", NOW + dt.timedelta(seconds=n))
    # o-0 took the 2 on hand; o-1 and o-2 wait for 2 each.
    with writing(engine_of(sessions)) as tx:
        level, woken, partly = stock.receive(
            tx, "north", "GADGET", 3, StockMoveKind.receive, MoveContext(at=NOW, reference="r1")
        )
    assert [(w.order_id, w.reserved) for w in woken] == [("o-1", 2)]
    assert [(p.order_id, p.reserved, p.short) for p in partly] == [("o-2", 1, 1)]  # took 1, waits for 1
    assert (level.on_hand, level.reserved) == (5, 5)
    with sessions() as s:
        o2 = queries.order_view(Tx.of(s), "o-2")
    assert o2.deliveries[0].lines[0].reserved == 1


def test_cancelling_releases_reservations_and_credits_back_allocated_stock(sessions) -> None:  # type: ignore[no-untyped-def]
    with writing(engine_of(sessions)) as tx:
        moves.place_order(tx, place("o-1", ("WIDGET", 3)), "m1", NOW)
        moves.place_order(tx, place("o-2", ("WIDGET", 2)), "m2", NOW)
        moves.confirm_payment(tx, ConfirmPayment(order_id="o-2", operator_id="alice"), "m3", NOW)
    with sessions() as s:
        level = (stock.levels(s, "north", "WIDGET"))[0]
    assert (level.on_hand, level.reserved) == (8, 3)
    with writing(engine_of(sessions)) as tx:
        one = moves.cancel_order(
            tx, CancelOrder(order_id="o-1", operator_id="alice", reason="asked"), "m4", NOW
        )
        two = moves.cancel_order(
            tx, CancelOrder(order_id="o-2", operator_id="alice", reason="asked"), "m5", NOW
        )
    assert one.deliveries[0].state is DeliveryState.reservation_voided
    assert two.deliveries[0].state is DeliveryState.deallocated
    with sessions() as s:
        level = (stock.levels(s, "north", "WIDGET"))[0]
        report = stock.verify(s)
    assert (level.on_hand, level.reserved) == (10, 0)
    assert report.ok, report.problems


def test_an_illegal_move_changes_nothing(sessions) -> None:  # type: ignore[no-untyped-def]
    with writing(engine_of(sessions)) as tx:
        moves.place_order(tx, place("o-1", ("WIDGET", 3)), "m1", NOW)
    with pytest.raises(IllegalTransition):
        with writing(engine_of(sessions)) as tx:
            moves.confirm_payment(tx, ConfirmPayment(order_id="o-1", operator_id="alice"), "m2", NOW)
            moves.confirm_payment(tx, ConfirmPayment(order_id="o-1", operator_id="alice"), "m3", NOW)
    with sessions() as s:
        view = queries.order_view(Tx.of(s), "o-1")
        audits = s.scalar(select(func.count()).select_from(AuditRow))
    assert view.state is OrderState.waiting_confirmation
    assert audits == 3


def test_stock_cannot_be_counted_below_what_is_promised(sessions) -> None:  # type: ignore[no-untyped-def]
    with writing(engine_of(sessions)) as tx:
        moves.place_order(tx, place("o-1", ("WIDGET", 8)), "m1", NOW)
    with pytest.raises(Refused, match="10 on hand, 8 reserved for orders; at most 2 can go"):
        with writing(engine_of(sessions)) as tx:
            stock.adjust(tx, "north", "WIDGET", -3, MoveContext(at=NOW, note="count"))


def test_verify_finds_a_counter_that_disagrees_with_the_ledger(sessions) -> None:  # type: ignore[no-untyped-def]
    with sessions.begin() as s:
        s.execute(update(Stock).where(Stock.sku == "WIDGET").values(on_hand=11))
    with sessions() as s:
        report = stock.verify(s)
    assert not report.ok
    [problem] = report.problems
    assert problem.where == "stock north/WIDGET"
    assert problem.found == "on hand 11, reserved 0 (counter)"


def test_verify_finds_stock_still_held_by_a_delivery_that_let_go_of_it(sessions) -> None:  # type: ignore[no-untyped-def]
    """The ledger and the line agree, but the delivery was voided without releasing its units:
    they would stay reserved for an order that no longer wants them."""
    with writing(engine_of(sessions)) as tx:
        moves.place_order(tx, place("o-1", ("WIDGET", 4)), "m1", NOW)
    with sessions.begin() as s:
        s.execute(update(Delivery).values(state=DeliveryState.reservation_voided))
    with sessions() as s:
        report = stock.verify(s)
    [problem] = report.problems
    assert problem.where == "order o-1 line 1 (WIDGET)"
    assert problem.expected == "reserved 0, allocated 0 (its delivery is reservation_voided)"
    assert problem.found == "reserved 4, allocated 0"


def test_confirming_an_offline_payment_records_the_total_as_captured_once(sessions) -> None:  # type: ignore[no-untyped-def]
    with writing(engine_of(sessions)) as tx:
        moves.place_order(tx, place("o-1", ("WIDGET", 2)), "m1", NOW)
    with writing(engine_of(sessions)) as tx:
        moves.confirm_payment(
            tx, ConfirmPayment(order_id="o-1", operator_id="alice", note="transfer seen"), "m2", NOW
        )
    with sessions() as s:
        record = queries.order_record(s, "o-1")
    [capture] = record.payments
    assert (capture.gateway, capture.operation.value, capture.amount, capture.currency) == (
        "offline",
        "capture",
        Decimal("19.00"),
        "EUR",
    )
    assert (capture.result.value, capture.settled, capture.operator_id, capture.note) == (
        "ok",
        True,
        "alice",
        "transfer seen",
    )
    assert (record.payment.status.value, record.payment.captured) == ("full", Decimal("19.00"))


def test_a_refund_is_not_recorded_by_hand_while_a_gateway_still_has_one_in_hand(sessions) -> None:  # type: ignore[no-untyped-def]
    """The gateway answered `processing`: it may yet pay the money back. A clerk's refund by hand
    now could pay the customer twice, so it is refused until the gateway has answered."""
    with writing(engine_of(sessions)) as tx:
        moves.place_order(tx, place("o-1", ("WIDGET", 2)), "m1", NOW)
    with writing(engine_of(sessions)) as tx:
        moves.confirm_payment(tx, ConfirmPayment(order_id="o-1", operator_id="alice"), "m2", NOW)
    with writing(engine_of(sessions)) as tx:
        moves.cancel_order(
            tx, CancelOrder(order_id="o-1", operator_id="alice", reason="changed mind"), "m3", NOW
        )
        [(refund_id, _, _)] = charges.pending_refunds(tx, "o-1")
    with writing(engine_of(sessions)) as tx:  # asked of the gateway: it is looking into it
        charges.settle_refund(tx, refund_id, Answer(result=Result.processing), "m3", NOW)

    by_hand = RecordRefund(order_id="o-1", operator_id="pat", note="paid back in cash")
    with pytest.raises(Refused, match=r"a refund of 19\.00 EUR is still processing at offline"):
        with writing(engine_of(sessions)) as tx:
            moves.record_refund(tx, by_hand, "m4", NOW)

    with writing(engine_of(sessions)) as tx:  # the gateway's answer: it went through
        charges.settle_refund(tx, refund_id, Answer(result=Result.ok), "m5", NOW)
    with sessions() as s:
        record = queries.order_record(s, "o-1")
    assert (record.order.state, record.payment.refunded) == (OrderState.cancelled, Decimal("19.00"))
