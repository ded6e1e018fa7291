"""Delivering an order's outbox rows: render, send, record. Idempotent: only rows still pending are
sent, and a row is recorded as sent right after the server accepted it. A crash between the two
sends that mail once more, with the same Message-ID.

Mail is first tried right after the move that wrote it, inside the move's activity (`send_now`,
for at most a few seconds), so a move costs one activity. The move writes it `sending`, handed over
to itself: the background delivery, which may be running for the same order, leaves it alone.
Whatever the mail server could not take then is delivered by `deliver_mail`, which the order
workflow runs in the background, one at a time, and Temporal retries with backoff until it
succeeds. Only that delivery sends pending mail, so no two senders ever hold the same row."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable

from temporalio import activity
from temporalio.exceptions import ApplicationError

from docket.activities.loop import run_here
from docket.adapters.mail import MaildirTransport, MailTransport, invalid_address
from docket.models.messages import DeliverMail, MailDelivered
from docket.rendering import Renderer, RenderError
from docket.store import outbox
from docket.store.direct import reading, writing
from docket.store.engine import SessionFactory, engine_of
from docket.store.outbox import Letter, Outcome

CHUNK = 50
# A move's own attempt gives up on its mail after 5 s in all: the staff member is waiting. It also
# stops in time to record what it sent before its activity's time-out, after which Temporal may
# start the move again beside it. The background delivery waits for the mail server as long as it
# takes.
INLINE_WITHIN = 5.0
RECORDING_TIME = 2.0
NO_TIME_LEFT = "not begun: the move's attempt had no time left before its activity's time-out"


async def deliver(
    letters: list[Letter], renderer: Renderer, transport: MailTransport, within: float | None = None
) -> list[Outcome]:
    """Render and send; never raises for one mail's trouble, says what became of each. With no
    time left (`within` 0), nothing is begun and everything waits."""
    if within is not None and within <= 0:
        return [Outcome(letter.outbox_id, False, NO_TIME_LEFT) for letter in letters]
    outcomes: dict[int, Outcome] = {}
    mails = []
    for letter in letters:
        if (invalid := invalid_address(letter.recipient, letter.cc)) is not None:
            outcomes[letter.outbox_id] = Outcome(letter.outbox_id, False, invalid, permanent=True)
            continue
        try:
            rendered = renderer.render(letter.shop_id, letter.kind, letter.template_key, letter.data)
        except RenderError as error:
            outcomes[letter.outbox_id] = Outcome(letter.outbox_id, False, str(error), permanent=True)
            continue
        mails.append((letter.outbox_id, renderer.compose(letter, rendered)))
    for sent in await transport.send(mails, within):
        outcomes[sent.outbox_id] = Outcome(sent.outbox_id, sent.ok, sent.error, sent.permanent)
    return [outcomes[letter.outbox_id] for letter in letters]


def waiting(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if not o.sent and not o.permanent]


class Mailer:
    def __init__(
        self,
        sessions: SessionFactory,
        renderer: Renderer,
        transport: MailTransport,
        inline_within: float = INLINE_WITHIN,
    ):
        self.engine = engine_of(sessions)
        self.renderer = renderer
        self.transport = transport
        self.inline_within = inline_within
        self.waits = not isinstance(transport, MaildirTransport)  # the maildir's writes never wait

    def send_now(self, order_id: str, letters: list[Letter] | None) -> bool:
        """Called from a move's activity thread after its transaction: send the mail the move
        wrote and handed over (`letters`, written `sending`). True when some of it must wait for
        the background delivery (which also takes what earlier moves left waiting).

        None: the move was applied by an earlier try, whose mail may never have been recorded. It
        is released to the background delivery, which sends pending mail one delivery at a time;
        sending it here could send it beside that delivery, which may be at it now.

        An attempt sends only until shortly before its activity's time-out, and an attempt past
        it sends nothing and releases nothing: Temporal may have started the next attempt, which
        is the one to send. Temporal starts that next attempt only after the time-out, so the mail
        it releases is on nobody's way."""
        left = self.time_left()
        if letters is None:
            if left > 0:
                self.release(order_id)
            return True
        deadline = time.monotonic() + left
        while letters:  # a mail that failed for good writes a report: sent here too (once: a
            # report's own failure is not reported), in what is left of the time
            within = max(deadline - time.monotonic(), 0.0)
            outcomes = run_here(deliver(letters, self.renderer, self.transport, within), waits=self.waits)
            later = bool(waiting(outcomes)) or len(letters) >= CHUNK
            letters = self.record(letters, outcomes, hand_over=not later)
            if later:
                return True
        return False

    def time_left(self) -> float:
        """Seconds this move's own attempt may spend on its mail."""
        within = self.inline_within
        if activity.in_activity():
            info = activity.info()
            if info.start_to_close_timeout is not None:
                ends = info.started_time + info.start_to_close_timeout
                left = (ends - dt.datetime.now(dt.UTC)).total_seconds() - RECORDING_TIME
                within = min(within, left)
        return max(within, 0.0)

    def pending(self, order_id: str) -> list[Letter]:
        with reading(self.engine) as tx:
            return outbox.pending(tx, order_id, limit=CHUNK)

    def release(self, order_id: str) -> None:
        with writing(self.engine) as tx:
            outbox.release(tx, order_id)

    def record(self, letters: list[Letter], outcomes: list[Outcome], hand_over: bool = False) -> list[Letter]:
        """What became of each mail; returns the reports of mail that failed for good (handed
        over to the caller with `hand_over`, else pending for the background delivery)."""
        at = dt.datetime.now(dt.UTC)
        by_id = {letter.outbox_id: letter for letter in letters}
        with writing(self.engine) as tx:
            if hand_over:
                outbox.hand_over(tx)
            return outbox.record(tx, by_id, outcomes, at)


class MailActivities:
    def __init__(self, mailer: Mailer):
        self.mailer = mailer

    @activity.defn(name="deliver_mail")
    async def deliver_mail(self, request: DeliverMail) -> MailDelivered:
        """Deliver every pending mail of the order, a chunk at a time, recording each chunk before
        the next, heartbeating all along. Fails, and is retried with backoff, while some mail
        cannot be sent for now; a mail that failed for good is recorded and reported, and the
        report is delivered by a later chunk."""
        mailer = self.mailer
        done = MailDelivered()
        alive = asyncio.create_task(keep_alive(lambda: done.sent))
        try:
            while letters := await asyncio.to_thread(mailer.pending, request.order_id):
                outcomes = await deliver(letters, mailer.renderer, mailer.transport)
                await asyncio.to_thread(mailer.record, letters, outcomes)
                done.sent += sum(o.sent for o in outcomes)
                done.failed += sum(o.permanent for o in outcomes)
                if later := waiting(outcomes):
                    raise ApplicationError(
                        f"{len(later)} mail(s) of order {request.order_id} not delivered yet: {later[0].error}",
                        type="MailNotDelivered",
                    )
        finally:
            alive.cancel()
        return done


async def keep_alive(sent: Callable[[], int]) -> None:
    """Heartbeat every quarter of the heartbeat time-out for as long as the delivery runs, however
    long a slow mail server takes over a chunk. Temporal then gives an attempt up (and starts
    another, which reads the same pending rows and sends them again) only when its worker is
    lost, not while it is still sending."""
    timeout = activity.info().heartbeat_timeout
    while timeout:
        activity.heartbeat(sent())
        await asyncio.sleep(timeout.total_seconds() / 4)
