"""Orders placed at once for scarce stock, on PostgreSQL: never oversold, back orders FIFO."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment

from docket.models.errors import OrderRejected
from docket.models.lifecycles import DeliveryState as D
from docket.models.schemas import ConfirmPayment, DeliveryGroup, ReceiveStock
from docket.store import queries
from tests.conftest import Shop, eventually, running_docket
from tests.orders import place

pytestmark = pytest.mark.postgres
ORDERS = 200


@pytest.fixture
async def pg_shop(
    postgres_engine: Engine, temporal_env: WorkflowEnvironment, request: pytest.FixtureRequest
) -> AsyncIterator[Shop]:
    async for running in running_docket(
        postgres_engine, temporal_env.client, widget_on_hand=50, **request.param
    ):
        yield running


@pytest.mark.parametrize("pg_shop", [{"widget_backorder": False}], indirect=True)
async def test_200_orders_at_once_for_50_units_reserve_exactly_50_and_reject_the_rest(pg_shop: Shop) -> None:
    alice = await pg_shop.op("alice")
    results = await asyncio.gather(
        *(pg_shop.docket.place_order(alice, place(f"o-{n}", ("WIDGET", 1))) for n in range(ORDERS)),
        return_exceptions=True,
    )
    placed = [r for r in results if not isinstance(r, BaseException)]
    rejected = [r for r in results if isinstance(r, OrderRejected)]
    assert (len(placed), len(rejected)) == (50, 150)
    assert all("WIDGET: 1 ordered, 0 available" in str(r) for r in rejected)
    [level] = await pg_shop.docket.stock_levels(alice, "north", "WIDGET")
    assert (level.on_hand, level.reserved) == (50, 50)
    assert (await pg_shop.docket.verify_stock(alice)).ok


@pytest.mark.parametrize("pg_shop", [{"widget_backorder": True}], indirect=True)
async def test_with_back_orders_150_wait_and_received_stock_is_allocated_oldest_first(pg_shop: Shop) -> None:
    alice = await pg_shop.op("alice")
    views = await asyncio.gather(
        *(pg_shop.docket.place_order(alice, place(f"o-{n}", ("WIDGET", 1))) for n in range(ORDERS))
    )
    waiting = sorted(
        (v for v in views if v.deliveries[0].group is DeliveryGroup.backorder),
        key=lambda v: (v.placed_at, v.order_id),
    )
    assert len(waiting) == 150
    await asyncio.gather(
        *(
            pg_shop.docket.confirm_payment(alice, ConfirmPayment(order_id=v.order_id, operator_id="alice"))
            for v in views
        )
    )

    first = await pg_shop.docket.change_stock(
        alice,
        ReceiveStock(reference="po-1", warehouse_id="north", sku="WIDGET", quantity=60, operator_id="alice"),
    )

    assert [w.order_id for w in first.woken] == [v.order_id for v in waiting[:60]]
    await pg_shop.docket.change_stock(
        alice,
        ReceiveStock(reference="po-2", warehouse_id="north", sku="WIDGET", quantity=90, operator_id="alice"),
    )

    async def all_allocated() -> bool:
        views = await pg_shop.docket.look_up(lambda tx: [queries.order_view(tx, v.order_id) for v in waiting])
        return all(view.deliveries[0].state is D.allocated for view in views)

    await eventually(all_allocated, timeout=60)
    [level] = await pg_shop.docket.stock_levels(alice, "north", "WIDGET")
    assert (level.on_hand, level.reserved) == (0, 0)
    assert (await pg_shop.docket.verify_stock(alice)).ok
