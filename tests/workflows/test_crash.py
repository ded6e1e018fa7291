"""A worker killed with SIGKILL in the middle of a batch (of orders, of mail, of callbacks): every
order still finishes, once. One asked to stop with SIGTERM exits cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from sqlalchemy import Engine, func, select
from temporalio.testing import WorkflowEnvironment

from docket.adapters.mail import SmtpTransport
from docket.adapters.payments import default_gateways
from docket.callbacks import Callbacks
from docket.models.lifecycles import DeliveryState as D
from docket.models.lifecycles import OrderState
from docket.models.schemas import ConfirmPayment, OrderView, StockMoveKind
from docket.sandbox import Books, create_sandbox
from docket.store import queries
from docket.store.tables import Order, OutboxRow, StockMovement
from tests.conftest import Shop, eventually, process_env, running_docket
from tests.orders import held_payment_went_through, place, send_callback
from tests.servers import listening, served
from tests.smtp import SmtpServer

ORDERS = 40


@pytest.fixture
async def shop_without_worker(
    sqlite_engine: Engine, temporal_env: WorkflowEnvironment
) -> AsyncIterator[Shop]:
    async for running in running_docket(
        sqlite_engine, temporal_env.client, with_worker=False, widget_on_hand=1000
    ):
        yield running


def start_worker(shop: Shop, engine: Engine, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "docket.cli", "worker"],
        env=process_env(shop, engine) | (env or {}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def test_killing_the_worker_mid_batch_loses_nothing_and_doubles_nothing(
    shop_without_worker: Shop, sqlite_engine: Engine
) -> None:
    shop = shop_without_worker
    alice = await shop.op("alice")

    async def order(n: int) -> None:
        await shop.docket.place_order(alice, place(f"o-{n}", ("WIDGET", 2), ("GADGET", 1)))
        await shop.docket.confirm_payment(alice, ConfirmPayment(order_id=f"o-{n}", operator_id="alice"))

    worker = start_worker(shop, sqlite_engine)
    batch = asyncio.gather(*(order(n) for n in range(ORDERS)))

    async def some_orders_placed() -> bool:
        return (await shop.docket.read(lambda s: s.scalar(select(func.count()).select_from(Order))) or 0) >= 5

    await eventually(some_orders_placed, timeout=60)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    worker = start_worker(shop, sqlite_engine)
    try:
        await asyncio.wait_for(batch, timeout=180)
    finally:
        worker.terminate()
        worker.wait(timeout=20)

    views = await shop.docket.look_up(lambda tx: [queries.order_view(tx, f"o-{n}") for n in range(ORDERS)])
    kinds = dict(
        await shop.docket.read(
            lambda s: s.execute(select(StockMovement.kind, func.count()).group_by(StockMovement.kind)).all()
        )
    )
    assert {v.state for v in views} == {OrderState.in_progress}
    assert all(d.state in (D.allocated, D.wait_inventory) for v in views for d in v.deliveries)
    # One reservation and one allocation for every WIDGET line and for the 2 GADGETs on hand (the
    # other GADGET lines wait for stock), and nothing twice.
    assert kinds[StockMoveKind.reserve] == ORDERS + 2
    assert kinds[StockMoveKind.allocate] == ORDERS + 2
    report = await shop.docket.verify_stock(alice)
    assert report.ok, report.problems


@pytest.fixture
async def mailing_shop_without_worker(
    sqlite_engine: Engine, temporal_env: WorkflowEnvironment, smtp: SmtpServer
) -> AsyncIterator[Shop]:
    transport = SmtpTransport("127.0.0.1", smtp.port, timeout=5)
    async for running in running_docket(
        sqlite_engine, temporal_env.client, with_worker=False, transport=transport, widget_on_hand=1000
    ):
        yield running


async def test_killing_the_worker_while_mail_is_delivered_loses_no_mail(
    mailing_shop_without_worker: Shop, sqlite_engine: Engine, smtp: SmtpServer
) -> None:
    shop = mailing_shop_without_worker
    alice = await shop.op("alice")
    smtp.inbox.delay = 0.2  # slow enough to be caught in the middle
    expected = 20 * 3  # order_received, new_order, order_awaiting_confirmation
    worker = start_worker(shop, sqlite_engine)
    batch = asyncio.gather(
        *(shop.docket.place_order(alice, place(f"o-{n}", ("WIDGET", 1))) for n in range(20))
    )
    try:
        await eventually(lambda: _arrived(smtp, 10), timeout=60)
        assert len(smtp.inbox.copies()) < expected, "killed while delivering"
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        worker = start_worker(shop, sqlite_engine)
        await asyncio.wait_for(batch, timeout=120)
        await eventually(lambda: _arrived(smtp, expected), timeout=120)
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    copies = smtp.inbox.copies()
    assert len(copies) == expected, "every mail arrived"
    # A mail accepted by the server but not yet recorded when the worker died is sent once more,
    # with the same Message-ID; nothing more than that.
    assert max(copies.values()) <= 2
    rows = await shop.docket.read(lambda s: list(s.scalars(select(OutboxRow))))
    assert len(rows) == expected and all(r.state == "sent" for r in rows)


async def _arrived(smtp: SmtpServer, count: int) -> bool:
    return len(smtp.inbox.copies()) >= count


async def test_killing_the_worker_between_a_capture_and_its_record_never_captures_twice(
    shop_without_worker: Shop, sqlite_engine: Engine
) -> None:
    shop = shop_without_worker
    sandbox = create_sandbox(None, "s", answer_delay=3.0)
    books = sandbox.state.books
    async with served(sandbox, listening()) as sandbox_url:
        placed = await _kill_between_capture_and_record(shop, sqlite_engine, sandbox_url, books)

    assert placed.state is OrderState.in_progress
    assert books.view("p-1").captured == Decimal("9.50"), "one capture at the gateway"
    record = await shop.docket.order_record(await shop.op("alice"), "p-1")
    assert [(p.operation.value, p.amount, p.result.value) for p in record.payments] == [
        ("authorize_capture", Decimal("9.50"), "ok")
    ]


async def _kill_between_capture_and_record(
    shop: Shop, engine: Engine, sandbox_url: str, books: Books
) -> OrderView:
    """Place a prepaid order; kill the worker once the gateway has taken the money and before docket
    records it (the sandbox answers 3 s late); start another; return the order as placed."""
    env = {"DOCKET_SANDBOX_URL": sandbox_url}
    worker = start_worker(shop, engine, env)
    try:
        cmd = place("p-1", ("WIDGET", 1), payment_flow="prepayment", payment_token="tok_ok")
        placing = asyncio.create_task(shop.docket.place_order(await shop.op("alice"), cmd))

        async def captured_at_the_gateway() -> bool:
            return books.view("p-1").captured > 0

        await eventually(captured_at_the_gateway, timeout=60)
        os.kill(worker.pid, signal.SIGKILL)  # the gateway took the money; docket has not recorded it
        worker.wait()
        worker = start_worker(shop, engine, env)
        return await asyncio.wait_for(placing, timeout=120)
    finally:
        worker.terminate()
        worker.wait(timeout=20)


async def test_killing_the_worker_while_callbacks_are_applied_settles_each_order_once(
    mailing_shop_without_worker: Shop, sqlite_engine: Engine, smtp: SmtpServer
) -> None:
    """A callback's move runs as a local activity, inside the workflow task that took the update:
    killed with the worker, the task is given to the next worker, which applies it again."""
    shop = mailing_shop_without_worker
    alice = await shop.op("alice")
    orders = [f"p-{n}" for n in range(20)]
    async with served(create_sandbox(None, "s"), listening()) as sandbox_url:  # holds every payment
        gateways = default_gateways(sandbox_url)
        worker = start_worker(shop, sqlite_engine, {"DOCKET_SANDBOX_URL": sandbox_url})
        try:
            for order_id in orders:
                cmd = place(order_id, ("WIDGET", 1), payment_flow="prepayment", payment_token="tok_review_ok")
                assert (await shop.docket.place_order(alice, cmd)).state is OrderState.waiting_payment
            facts = [
                await held_payment_went_through(shop, order_id, f"evt-{order_id}") for order_id in orders
            ]
            smtp.inbox.delay = 0.1  # each callback's move sends its mails: slow enough to be caught
            callbacks = Callbacks(shop.docket, gateways)
            sending = asyncio.gather(*(send_callback(callbacks, fact) for fact in facts))

            async def some_paid() -> bool:
                return await _orders_in(shop, OrderState.in_progress) >= 3

            await eventually(some_paid, timeout=60)
            assert await _orders_in(shop, OrderState.in_progress) < len(orders), "killed mid-batch"
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait()
            worker = start_worker(shop, sqlite_engine, {"DOCKET_SANDBOX_URL": sandbox_url})
            answers = await asyncio.wait_for(sending, timeout=180)
        finally:
            worker.terminate()
            worker.wait(timeout=20)

    assert [answer.status for answer in answers] == [200] * len(orders)
    for order_id in orders:
        record = await shop.docket.order_record(alice, order_id)
        assert record.order.state is OrderState.in_progress
        assert [(p.operation.value, p.result.value) for p in record.payments] == [("authorize_capture", "ok")]
        assert record.payment.captured == Decimal("9.50")
    allocations = await shop.docket.read(
        lambda s: s.scalar(
            select(func.count())
            .where(StockMovement.kind == StockMoveKind.allocate)
            .select_from(StockMovement)
        )
    )
    assert allocations == len(orders), "each order's stock allocated once"
    assert await Callbacks(shop.docket, gateways).inbox(alice) == [], "every callback marked processed"
    report = await shop.docket.verify_stock(alice)
    assert report.ok, report.problems


async def _orders_in(shop: Shop, state: OrderState) -> int:
    return (
        await shop.docket.read(
            lambda s: s.scalar(select(func.count()).select_from(Order).where(Order.state == state))
        )
        or 0
    )


@pytest.mark.parametrize("ctrl_c", ["heard", "ignored"])  # ignored: started in the background (`&`)
async def test_a_worker_asked_to_stop_with_sigterm_finishes_and_exits_cleanly(
    shop_without_worker: Shop, sqlite_engine: Engine, ctrl_c: str
) -> None:
    shop = shop_without_worker
    worker = subprocess.Popen(
        [sys.executable, "-m", "docket.cli", "worker"],
        env=process_env(shop, sqlite_engine),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ctrl_c == "ignored" else None,
    )
    try:
        placed = await shop.docket.place_order(await shop.op("alice"), place("o-1", ("WIDGET", 1)))
        assert placed.state is OrderState.waiting_confirmation
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(worker.wait, 30)
        except subprocess.TimeoutExpired:
            worker.kill()
            raise
    assert code == 0
    assert worker.stderr is not None and "stopped" in worker.stderr.read().decode()
