"""Recording what became of each mail, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, select

from docket.models.schemas import MailState
from docket.store import catalogue, moves, outbox
from docket.store.engine import SessionFactory, make_session_factory
from docket.store.outbox import Outcome
from docket.store.tables import OutboxRow
from tests.catalogue import catalogue_for_tests
from tests.orders import place

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def sessions(engine: Engine) -> SessionFactory:
    factory = make_session_factory(engine)
    with factory.begin() as session:
        catalogue.load(session, catalogue_for_tests(), NOW)
        moves.place_order(session, place("o-1", ("WIDGET", 1)), "m1", NOW)
    return factory


def rows(sessions: SessionFactory) -> dict[str, OutboxRow]:
    with sessions() as session:
        return {r.template_key: r for r in session.scalars(select(OutboxRow))}


def test_a_mail_recorded_as_sent_is_never_pending_again(sessions: SessionFactory) -> None:
    with sessions() as session:
        letters = {letter.template_key: letter for letter in outbox.pending(session, "o-1")}
    assert set(letters) == {"order_received", "new_order", "order_awaiting_confirmation"}
    received = letters["order_received"]

    for _ in range(2):  # a retried activity records the same outcome again: nothing changes
        with sessions.begin() as session:
            outbox.record(session, {received.outbox_id: received}, [Outcome(received.outbox_id, True)], NOW)
    with sessions() as session:
        assert {letter.template_key for letter in outbox.pending(session, "o-1")} == {
            "new_order",
            "order_awaiting_confirmation",
        }
    row = rows(sessions)["order_received"]
    assert (row.state, row.attempts) == (MailState.sent, 1)


def test_a_transient_failure_keeps_the_mail_pending_with_its_reason(sessions: SessionFactory) -> None:
    with sessions() as session:
        [letter] = [x for x in outbox.pending(session, "o-1") if x.template_key == "new_order"]
    with sessions.begin() as session:
        outcome = Outcome(letter.outbox_id, False, "SMTP server unavailable")
        assert outbox.record(session, {letter.outbox_id: letter}, [outcome], NOW) == 0
    row = rows(sessions)["new_order"]
    assert (row.state, row.attempts, row.error) == (MailState.pending, 1, "SMTP server unavailable")


def test_a_mail_failed_for_good_is_reported_to_the_admins_once_however_often_retried(
    sessions: SessionFactory,
) -> None:
    for attempt in range(2):
        with sessions() as session:
            [letter] = [x for x in outbox.pending(session, "o-1") if x.template_key == "order_received"]
        with sessions.begin() as session:
            outcome = Outcome(letter.outbox_id, False, "550 no such mailbox", permanent=True)
            reports = outbox.record(session, {letter.outbox_id: letter}, [outcome], NOW)
        assert reports == 1  # one report row per admin address, written (or found) once
        with sessions() as session:
            failed_reports = list(
                session.scalars(select(OutboxRow).where(OutboxRow.template_key == "mail_failed"))
            )
        assert [r.recipient for r in failed_reports] == ["admin@alpha.test"]
        assert failed_reports[0].data["reason"] == "550 no such mailbox"
        assert rows(sessions)["order_received"].state == MailState.failed
        if attempt == 0:
            with sessions.begin() as session:
                assert outbox.retry(session, [], "o-1") == [(letter.outbox_id, "o-1")]


def test_only_failed_mails_are_put_back_by_a_retry(sessions: SessionFactory) -> None:
    with sessions.begin() as session:
        assert outbox.retry(session, [], "o-1") == []
    assert {r.state for r in rows(sessions).values()} == {MailState.pending}
