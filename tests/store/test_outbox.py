"""Recording what became of each mail, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import itertools
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from temporalio.testing import ActivityEnvironment

from docket.activities.mail import INLINE_WITHIN, NO_TIME_LEFT, MailActivities, Mailer
from docket.activities.orders import OrderActivities
from docket.adapters.mail import MaildirTransport, SmtpTransport
from docket.models.messages import DeliverMail, Moved, PlaceOrderMove
from docket.models.schemas import MailState
from docket.rendering import Renderer
from docket.store import moves, outbox
from docket.store.direct import Tx, writing
from docket.store.engine import SessionFactory, engine_of
from docket.store.outbox import Outcome
from docket.store.tables import OutboxRow
from tests.catalogue import catalogued_sessions
from tests.orders import confirmation, place
from tests.smtp import SmtpServer

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def catalogued(engine: Engine) -> SessionFactory:
    return catalogued_sessions(engine, NOW)


@pytest.fixture
def sessions(catalogued: SessionFactory) -> SessionFactory:
    """Order o-1 placed: three mails pending."""
    with writing(engine_of(catalogued)) as tx:
        moves.place_order(tx, place("o-1", ("WIDGET", 1)), "m1", NOW)
    return catalogued


def smtp_mailer(sessions: SessionFactory, smtp: SmtpServer, inline_within: float = INLINE_WITHIN) -> Mailer:
    transport = SmtpTransport("127.0.0.1", smtp.port, timeout=5)
    return Mailer(sessions, Renderer("docket@shop.test"), transport, inline_within)


def rows(sessions: SessionFactory) -> dict[str, OutboxRow]:
    with sessions() as session:
        return {r.template_key: r for r in session.scalars(select(OutboxRow))}


def test_a_mail_recorded_as_sent_is_never_pending_again(sessions: SessionFactory) -> None:
    with sessions() as session:
        letters = {letter.template_key: letter for letter in outbox.pending(Tx.of(session), "o-1")}
    assert set(letters) == {"order_received", "new_order", "order_awaiting_confirmation"}
    received = letters["order_received"]

    for _ in range(2):  # a retried activity records the same outcome again: nothing changes
        with writing(engine_of(sessions)) as tx:
            outbox.record(tx, {received.outbox_id: received}, [Outcome(received.outbox_id, True)], NOW)
    with sessions() as session:
        assert {letter.template_key for letter in outbox.pending(Tx.of(session), "o-1")} == {
            "new_order",
            "order_awaiting_confirmation",
        }
    row = rows(sessions)["order_received"]
    assert (row.state, row.attempts) == (MailState.sent, 1)


def test_a_transient_failure_keeps_the_mail_pending_with_its_reason(sessions: SessionFactory) -> None:
    with sessions() as session:
        [letter] = [x for x in outbox.pending(Tx.of(session), "o-1") if x.template_key == "new_order"]
    with writing(engine_of(sessions)) as tx:
        outcome = Outcome(letter.outbox_id, False, "SMTP server unavailable")
        assert outbox.record(tx, {letter.outbox_id: letter}, [outcome], NOW) == []
    row = rows(sessions)["new_order"]
    assert (row.state, row.attempts, row.error) == (MailState.pending, 1, "SMTP server unavailable")


def test_a_mail_failed_for_good_is_reported_to_the_admins_once_however_often_retried(
    sessions: SessionFactory,
) -> None:
    for attempt in range(2):
        with sessions() as session:
            [letter] = [
                x for x in outbox.pending(Tx.of(session), "o-1") if x.template_key == "order_received"
            ]
        with writing(engine_of(sessions)) as tx:
            outcome = Outcome(letter.outbox_id, False, "550 no such mailbox", permanent=True)
            reports = outbox.record(tx, {letter.outbox_id: letter}, [outcome], NOW)
        # one report per admin address, written once: a second failure of the mail writes none
        assert [r.recipient for r in reports] == (["admin@alpha.test"] if attempt == 0 else [])
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


async def test_background_delivery_leaves_alone_the_mail_a_move_is_sending(
    sessions: SessionFactory, smtp: SmtpServer
) -> None:
    """A move commits and sends its own mail; the order's background delivery (running because
    earlier mail could not be sent) must not send that mail too."""
    mailer = smtp_mailer(sessions, smtp)
    smtp.inbox.delay = 0.5  # each mail: long enough for the background delivery to run meanwhile
    confirm = confirmation("o-1", "o-1/2", NOW)

    with ThreadPoolExecutor(1) as pool:
        moving = pool.submit(OrderActivities(sessions, mailer, {}).confirm_payment, confirm)
        while not smtp.inbox.snapshot() and not moving.done():  # the move committed and is sending
            await asyncio.sleep(0.01)
        background = await ActivityEnvironment().run(
            MailActivities(mailer).deliver_mail, DeliverMail(order_id="o-1")
        )
        moved = moving.result()

    assert isinstance(moved, Moved) and not moved.mail_waiting
    assert background.sent == 3, "the placement's three mails: the move sends its own"
    assert set(smtp.inbox.copies().values()) == {1}, "no mail twice"
    with sessions() as session:
        states = {r.state for r in session.scalars(select(OutboxRow))}
        mails = session.scalar(select(func.count()).select_from(OutboxRow))
    assert (states, len(smtp.inbox.snapshot())) == ({MailState.sent.value}, mails)


class WorkerDiesBeforeSending:
    """The transport of a worker that died after a move committed and before its mail went out."""

    async def send(self, mails: object, within: float | None = None) -> list[object]:
        raise RuntimeError("the worker died here")


async def test_a_move_retried_after_its_worker_died_leaves_its_mail_to_the_background_delivery(
    sessions: SessionFactory, smtp: SmtpServer
) -> None:
    """The retry finds the move applied and its mail unsent. It must not send the order's pending
    mail itself: the background delivery may be sending that mail at the same moment."""
    confirm = confirmation("o-1", "o-1/2", NOW)
    dying = Mailer(sessions, Renderer("docket@shop.test"), WorkerDiesBeforeSending())
    mailer = smtp_mailer(sessions, smtp)
    smtp.inbox.delay = 0.5  # each mail: long enough for the retry to run meanwhile

    with ThreadPoolExecutor(1) as pool:
        with pytest.raises(RuntimeError, match="the worker died here"):
            pool.submit(OrderActivities(sessions, dying, {}).confirm_payment, confirm).result()
        background = asyncio.ensure_future(
            ActivityEnvironment().run(MailActivities(mailer).deliver_mail, DeliverMail(order_id="o-1"))
        )
        while not smtp.inbox.snapshot():  # the placement's mail is on its way
            await asyncio.sleep(0.01)
        retried = await asyncio.wrap_future(
            pool.submit(OrderActivities(sessions, mailer, {}).confirm_payment, confirm)
        )
        await background
    # the workflow runs the background delivery again for what the retry left waiting
    await ActivityEnvironment().run(MailActivities(mailer).deliver_mail, DeliverMail(order_id="o-1"))

    assert set(smtp.inbox.copies().values()) == {1}, "no mail twice"
    assert isinstance(retried, Moved) and retried.mail_waiting, "the retry leaves its mail to the background"
    with sessions() as session:
        states = {r.state for r in session.scalars(select(OutboxRow))}
        mails = session.scalar(select(func.count()).select_from(OutboxRow))
    assert (states, len(smtp.inbox.snapshot())) == ({MailState.sent.value}, mails)


async def test_a_slow_mail_server_does_not_let_the_delivery_look_lost(
    sessions: SessionFactory, smtp: SmtpServer
) -> None:
    """Temporal gives up an attempt that stops heartbeating and starts another, which would send
    the same pending mail again: a delivery heartbeats while the server takes its time."""
    mailer = smtp_mailer(sessions, smtp)
    smtp.inbox.delay = 1.0  # the placement's three mails: three seconds
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, heartbeat_timeout=dt.timedelta(seconds=2))
    beats: list[float] = []
    env.on_heartbeat = lambda *details: beats.append(time.monotonic())

    started = time.monotonic()
    delivered = await env.run(MailActivities(mailer).deliver_mail, DeliverMail(order_id="o-1"))
    ended = time.monotonic()

    assert delivered.sent == 3
    moments = [started, *beats, ended]
    longest = max(b - a for a, b in itertools.pairwise(moments))
    assert longest < 2, f"{longest:.1f} s without a heartbeat: the attempt would be given up"


async def test_a_move_waits_for_a_slow_mail_server_only_so_long_and_the_rest_arrives_once(
    catalogued: SessionFactory, smtp: SmtpServer
) -> None:
    """The staff member waits for the move's mail a few seconds at most, and the move must end
    within its activity's time-out (else Temporal starts it again beside itself): what a slow
    server has not taken by then is left to the background delivery."""
    mailer = smtp_mailer(catalogued, smtp, inline_within=1.0)
    smtp.inbox.recipient_delay = 0.4  # the placement's three mails would take 1.2 s
    placement = PlaceOrderMove(
        move_id="o-1/1", at=NOW, deliver_mail=True, command=place("o-1", ("WIDGET", 1))
    )

    with ThreadPoolExecutor(1) as pool:
        moved = await asyncio.wrap_future(
            pool.submit(OrderActivities(catalogued, mailer, {}).place_order, placement)
        )
    with catalogued() as session:
        left = list(session.scalars(select(OutboxRow).where(OutboxRow.state == MailState.pending.value)))
    await ActivityEnvironment().run(MailActivities(mailer).deliver_mail, DeliverMail(order_id="o-1"))

    assert isinstance(moved, Moved) and moved.mail_waiting
    assert left and all("a move waits for its mail" in (row.error or "") for row in left), [
        r.error for r in left
    ]
    assert sorted(smtp.inbox.copies().values()) == [1, 1, 1], "each of the placement's mails once"


async def test_an_attempt_past_its_time_out_leaves_the_mail_to_the_next_attempt(
    sessions: SessionFactory, smtp: SmtpServer
) -> None:
    """Temporal starts a move's next attempt once the last one's time-out has passed, whether or
    not the last one still runs. A late attempt sends nothing and releases nothing; the next one
    releases the mail to the background delivery, and each mail arrives once."""
    confirm = confirmation("o-1", "o-1/2", NOW)
    dying = Mailer(sessions, Renderer("docket@shop.test"), WorkerDiesBeforeSending())
    mailer = smtp_mailer(sessions, smtp)

    def attempt(activities: OrderActivities, began_ago: float) -> Moved:
        env = ActivityEnvironment()
        began = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=began_ago)
        env.info = dataclasses.replace(
            env.info, started_time=began, start_to_close_timeout=dt.timedelta(seconds=15)
        )
        moved = env.run(activities.confirm_payment, confirm)
        assert isinstance(moved, Moved)
        return moved

    def states() -> set[str]:
        """Of the confirmation's mail."""
        confirmed = OutboxRow.template_key.in_(("order_confirmed", "payment_confirmed"))
        with sessions() as session:
            return set(session.scalars(select(OutboxRow.state).where(confirmed)))

    with pytest.raises(RuntimeError, match="the worker died here"):
        await asyncio.to_thread(attempt, OrderActivities(sessions, dying, {}), 0)
    late = await asyncio.to_thread(attempt, OrderActivities(sessions, mailer, {}), 16)
    assert late.mail_waiting and states() == {MailState.sending.value} and not smtp.inbox.snapshot()
    timely = await asyncio.to_thread(attempt, OrderActivities(sessions, mailer, {}), 1)
    assert timely.mail_waiting and states() == {MailState.pending.value}
    await ActivityEnvironment().run(MailActivities(mailer).deliver_mail, DeliverMail(order_id="o-1"))

    assert set(smtp.inbox.copies().values()) == {1}, "no mail twice"
    with sessions() as session:
        mails = session.scalar(select(func.count()).select_from(OutboxRow))
        unsent = session.scalar(select(func.count()).where(OutboxRow.state != MailState.sent.value))
    assert (len(smtp.inbox.snapshot()), unsent) == (mails, 0)


async def test_a_move_applied_past_its_time_out_sends_none_of_its_mail_itself(
    catalogued: SessionFactory, tmp_path: Path
) -> None:
    mailer = Mailer(catalogued, Renderer("docket@shop.test"), MaildirTransport(tmp_path / "mail"))
    placement = PlaceOrderMove(
        move_id="o-1/1", at=NOW, deliver_mail=True, command=place("o-1", ("WIDGET", 1))
    )
    env = ActivityEnvironment()
    began = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=14)  # 1 s before its 15 s are up
    env.info = dataclasses.replace(
        env.info, started_time=began, start_to_close_timeout=dt.timedelta(seconds=15)
    )

    moved = await asyncio.to_thread(env.run, OrderActivities(catalogued, mailer, {}).place_order, placement)

    assert isinstance(moved, Moved) and moved.mail_waiting
    assert not list((tmp_path / "mail" / "new").glob("*")), "no mail written by the late attempt"
    with catalogued() as session:
        left = list(session.scalars(select(OutboxRow)))
    assert left and {(r.state, r.error) for r in left} == {(MailState.pending.value, NO_TIME_LEFT)}
