"""On SQLite with the maildir the worker runs moves on its event loop (docket.activities.inline).
A move that would wait there for the store's write lock, held by another process, runs in an
activity thread instead: the worker goes on answering meanwhile, and the move is applied once,
with its mail written once, when the lock is free. One that finds the lock taken only when it
records its mail as sent is applied once too, and its mail delivered by the background delivery,
one file each."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine, func, select
from temporalio.testing import WorkflowEnvironment

from docket.adapters.mail import Mail, MaildirTransport, Sent
from docket.models.lifecycles import DeliveryState as D
from docket.models.lifecycles import OrderState
from docket.store.tables import AuditRow, OutboxRow, StockMovement
from docket.workflows.order import OrderWorkflow
from tests.conftest import Shop, eventually, running_docket
from tests.orders import confirm, move, place, view_of


async def test_a_move_that_finds_the_store_locked_elsewhere_waits_in_a_thread_and_the_worker_answers(
    shop: Shop, sqlite_engine: Engine
) -> None:
    alice = await shop.op("alice")
    await shop.docket.place_order(alice, place("o-1", ("WIDGET", 2)))
    await shop.docket.place_order(alice, place("o-2", ("WIDGET", 1)))
    assert isinstance(shop.transport, MaildirTransport)

    # Another process writing, until this test has seen what it waits for (or, should the
    # worker's loop be stuck waiting for this lock, for 20 s: then the test fails).
    locked, done, gave_up = threading.Event(), threading.Event(), threading.Event()

    def hold_the_lock() -> None:
        other = sqlite3.connect(str(sqlite_engine.url.database), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        locked.set()
        if not done.wait(20):
            gave_up.set()
        other.rollback()
        other.close()

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    try:
        locked.wait()
        confirming = asyncio.create_task(confirm(shop, "o-1"))
        wid = shop.docket.workflow_id_prefix
        await eventually(lambda: _running_activity(shop, f"{wid}order-o-1"))
        # While the move waits for the lock, the worker answers a query about another order:
        # its event loop is not the one waiting.
        answered = await shop.client.get_workflow_handle(f"{wid}order-o-2").query(OrderWorkflow.view)
        assert answered.state is OrderState.waiting_confirmation
        assert not gave_up.is_set(), "the worker waited for the lock on its event loop"
        assert (await view_of(shop, "o-1")).state is OrderState.waiting_confirmation
        assert not confirming.done()
    finally:
        done.set()
        holder.join()

    confirmed = await confirming
    assert confirmed.state is OrderState.in_progress
    assert confirmed.deliveries[0].state is D.allocated
    shipped = await move(shop, "o-1", 1, "pack", "mark_ready", "ship", "deliver")
    assert shipped.state is OrderState.completed

    with sqlite_engine.connect() as connection:
        confirmations = connection.scalar(
            select(func.count())
            .select_from(AuditRow)
            .where(AuditRow.order_id == "o-1", AuditRow.trigger == "confirm_payment")
        )
        allocations = connection.scalar(
            select(func.count())
            .select_from(StockMovement)
            .where(StockMovement.order_id == "o-1", StockMovement.kind == "allocate")
        )
        mail_states = connection.execute(select(OutboxRow.state).where(OutboxRow.order_id == "o-1")).scalars()
        states = list(mail_states)
    assert (confirmations, allocations) == (1, 1)
    assert states and set(states) == {"sent"}
    files = [f.read_bytes() for f in (shop.transport.folder / "new").iterdir()]
    assert sum(b"X-Docket-Order: o-1\n" in f for f in files) == len(states)


async def _running_activity(shop: Shop, workflow_id: str) -> bool:
    described = await shop.client.get_workflow_handle(workflow_id).describe()
    return bool(described.raw_description.pending_activities)


class _MaildirWhileAnotherWrites(MaildirTransport):
    """A maildir that, once armed, lets another process take the store's write lock for half a
    second right after it wrote a batch: the move's record of that mail as sent finds it taken."""

    def __init__(self, folder: Path, database: str):
        super().__init__(folder)
        self.database = database
        self.armed = False
        self.written: list[int] = []  # outbox ids, once per time written

    async def send(self, mails: Sequence[tuple[int, Mail]], within: float | None = None) -> list[Sent]:
        sent = await super().send(mails, within)
        self.written += [outbox_id for outbox_id, _ in mails]
        if self.armed:
            self.armed = False
            other = sqlite3.connect(self.database, isolation_level=None, check_same_thread=False)
            other.execute("BEGIN IMMEDIATE")
            threading.Timer(0.5, lambda: (other.rollback(), other.close())).start()
        return sent


async def test_a_move_whose_mail_record_finds_the_store_locked_is_applied_once_and_its_mail_delivered_once(
    sqlite_engine: Engine, temporal_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    transport = _MaildirWhileAnotherWrites(tmp_path / "mail", str(sqlite_engine.url.database))
    async for shop in running_docket(sqlite_engine, temporal_env.client, transport=transport):
        alice = await shop.op("alice")
        await shop.docket.place_order(alice, place("o-1", ("WIDGET", 2)))
        transport.armed = True
        confirmed = await confirm(shop, "o-1")
        assert confirmed.state is OrderState.in_progress

        def mail_of_o1() -> list[tuple[int, str]]:
            with sqlite_engine.connect() as connection:
                found = connection.execute(
                    select(OutboxRow.outbox_id, OutboxRow.state).where(OutboxRow.order_id == "o-1")
                )
                return [(row.outbox_id, row.state) for row in found]

        async def all_sent() -> bool:
            return all(state == "sent" for _, state in mail_of_o1())

        await eventually(all_sent)  # the background delivery took what the move could not record
        with sqlite_engine.connect() as connection:
            confirmations = connection.scalar(
                select(func.count())
                .select_from(AuditRow)
                .where(AuditRow.order_id == "o-1", AuditRow.trigger == "confirm_payment")
            )
        assert confirmations == 1
        rows = mail_of_o1()
        # the confirmation's mail was written twice (once by the move, once by the background
        # delivery), each time to the same file
        assert any(transport.written.count(outbox_id) == 2 for outbox_id, _ in rows)
        files = [f.read_bytes() for f in (transport.folder / "new").iterdir()]
        assert sum(b"X-Docket-Order: o-1\n" in f for f in files) == len(rows)
