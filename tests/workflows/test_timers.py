"""Durable timers measured in hours and days, on the time-skipping test server."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, update
from temporalio.testing import WorkflowEnvironment

from docket.adapters.payments import default_gateways
from docket.callbacks import Callbacks
from docket.models.lifecycles import DeliveryState as D
from docket.models.lifecycles import OrderState
from docket.models.schemas import CancelOrder, ConfirmPayment
from docket.sandbox import create_sandbox
from docket.store.tables import Product
from tests.conftest import Shop, running_docket
from tests.orders import held_payment_went_through, place, send_callback
from tests.servers import listening, served
from tests.workflows.test_order_lifecycle import view_of


@pytest.fixture
async def skipping_shop(
    sqlite_engine: Engine, time_env: WorkflowEnvironment, request: pytest.FixtureRequest
) -> AsyncIterator[Shop]:
    async for running in running_docket(sqlite_engine, time_env.client, **getattr(request, "param", {})):
        yield running


async def test_an_unconfirmed_offline_order_is_cancelled_when_the_payment_deadline_passes(
    skipping_shop: Shop, time_env: WorkflowEnvironment
) -> None:
    shop = skipping_shop
    placed = await shop.docket.place_order(await shop.op("alice"), place("o-1", ("WIDGET", 4)))
    assert placed.payment_deadline == placed.placed_at + dt.timedelta(hours=72)

    await time_env.sleep(dt.timedelta(hours=71))
    assert (await view_of(shop, "o-1")).state is OrderState.waiting_confirmation

    await time_env.sleep(dt.timedelta(hours=2))

    ended = await view_of(shop, "o-1")

    assert ended.state is OrderState.cancelled
    assert ended.deliveries[0].state is D.reservation_voided
    record = await shop.docket.order_record(await shop.op("alice"), "o-1")
    assert (record.history[-1].trigger, record.history[-1].operator_id) == ("cancel", None)
    assert record.history[-1].note == "payment not confirmed by the deadline"
    [level] = await shop.docket.stock_levels(await shop.op("alice"), "north", "WIDGET")
    assert level.reserved == 0


@pytest.mark.parametrize("skipping_shop", [{"future_on_hand": 5}], indirect=True)
async def test_a_preorder_waits_for_its_release_date_then_is_allocated(
    skipping_shop: Shop, time_env: WorkflowEnvironment
) -> None:
    shop = skipping_shop
    alice = await shop.op("alice")
    # The test server's clock is shared by the session: the release date is three days from it, by
    # the shop's own calendar (a release starts at midnight where the shop is; by the UTC date the
    # test failed whenever the server's clock stood in the hour before midnight UTC).
    today = (await time_env.get_current_time()).astimezone(ZoneInfo("Europe/Berlin")).date()
    release = today + dt.timedelta(days=3)
    with shop.sessions.begin() as s:
        s.execute(update(Product).where(Product.sku == "FUTURE").values(release_date=release))
    placed = await shop.docket.place_order(alice, place("o-1", ("FUTURE", 2)))
    assert placed.deliveries[0].group.value == "D2"
    confirmed = await shop.docket.confirm_payment(alice, ConfirmPayment(order_id="o-1", operator_id="alice"))
    assert confirmed.deliveries[0].state is D.wait_date

    await time_env.sleep(dt.timedelta(days=2))
    assert (await view_of(shop, "o-1")).deliveries[0].state is D.wait_date

    await time_env.sleep(dt.timedelta(days=2))

    view = await view_of(shop, "o-1")
    assert view.deliveries[0].state is D.allocated
    assert view.state is OrderState.in_progress


@pytest.fixture
async def silent_sandbox() -> AsyncIterator[str]:
    """A sandbox gateway that never calls back: a payment held for review stays processing."""
    async with served(create_sandbox(None, "s"), listening()) as url:
        yield url


async def test_a_payment_still_processing_at_the_deadline_cancels_the_order_and_a_late_success_is_refunded(
    sqlite_engine: Engine, time_env: WorkflowEnvironment, silent_sandbox: str
) -> None:
    gateways = default_gateways(silent_sandbox)
    async for shop in running_docket(sqlite_engine, time_env.client, gateways=gateways):
        alice = await shop.op("alice")
        cmd = place("o-1", ("WIDGET", 4), payment_flow="prepayment", payment_token="tok_review_ok")
        placed = await shop.docket.place_order(alice, cmd)
        assert placed.state is OrderState.waiting_payment
        assert placed.payment_deadline == placed.placed_at + dt.timedelta(hours=72)

        await time_env.sleep(dt.timedelta(hours=73))

        # cancelled, stock released; the payment may yet go through, so the order waits for it
        ended = await view_of(shop, "o-1")
        assert (ended.state, ended.deliveries[0].state) == (
            OrderState.cancelled_waiting_payment,
            D.reservation_voided,
        )
        record = await shop.docket.order_record(alice, "o-1")
        assert record.history[-1].note == "payment still processing at the deadline"
        [level] = await shop.docket.stock_levels(alice, "north", "WIDGET")
        assert level.reserved == 0

        # the fraud review ends in the payment's favour after all: the money goes back
        fact = await held_payment_went_through(shop, "o-1", "evt-late")
        answered = await send_callback(Callbacks(shop.docket, gateways), fact)
        assert answered.status == 200
        record = await shop.docket.order_record(alice, "o-1")
        assert record.order.state is OrderState.cancelled
        assert [(p.operation.value, p.result.value) for p in record.payments] == [
            ("authorize_capture", "ok"),
            ("refund", "ok"),
        ]
        assert record.payment.captured == record.payment.refunded == Decimal("38.00")


async def test_a_refused_refund_is_asked_again_on_a_backoff_timer_until_it_goes_through(
    sqlite_engine: Engine, time_env: WorkflowEnvironment, silent_sandbox: str
) -> None:
    async for shop in running_docket(
        sqlite_engine, time_env.client, gateways=default_gateways(silent_sandbox)
    ):
        alice = await shop.op("alice")
        cmd = place("o-1", ("WIDGET", 1), payment_flow="prepayment", payment_token="tok_refund_fail")
        await shop.docket.place_order(alice, cmd)
        cancelled = await shop.docket.cancel_order(
            alice, CancelOrder(order_id="o-1", operator_id="alice", reason="x")
        )
        assert cancelled.state is OrderState.cancelled_waiting_payment  # the first refund was refused

        await time_env.sleep(dt.timedelta(seconds=70))  # retried after a minute: refused again
        assert (await view_of(shop, "o-1")).state is OrderState.cancelled_waiting_payment
        await time_env.sleep(dt.timedelta(seconds=130))  # and after two more: it goes through

        record = await shop.docket.order_record(alice, "o-1")
        assert record.order.state is OrderState.cancelled
        assert [p.result.value for p in record.payments if p.operation.value == "refund"] == [
            "failed",
            "failed",
            "ok",
        ]
