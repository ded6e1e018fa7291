"""An order driven through its lifecycle on real Temporal and a real store."""

from __future__ import annotations

from docket.models.lifecycles import DeliveryState, OrderState
from docket.models.schemas import ConfirmPayment, DeliveryGroup, MoveDelivery
from tests.conftest import Shop
from tests.orders import place


async def test_a_standard_order_is_reserved_confirmed_allocated_packed_shipped_and_completed(shop: Shop) -> None:
    alice = await shop.op("alice")

    placed = await shop.docket.place_order(alice, place("o-1", ("WIDGET", 3)))
    assert placed.state is OrderState.waiting_confirmation
    [delivery] = placed.deliveries
    assert (delivery.group, delivery.warehouse_id, delivery.state) == (DeliveryGroup.standard, "north", DeliveryState.reserved)

    confirmed = await shop.docket.confirm_payment(alice, ConfirmPayment(order_id="o-1", operator_id="alice"))
    assert confirmed.state is OrderState.in_progress
    assert confirmed.deliveries[0].state is DeliveryState.allocated

    for trigger in ("pack", "mark_ready", "ship", "deliver"):
        view = await shop.docket.move_delivery(
            alice, MoveDelivery(order_id="o-1", operator_id="alice", delivery_no=1, trigger=trigger)
        )
    assert view.state is OrderState.completed
    assert view.deliveries[0].state is DeliveryState.shipped
    report = await shop.docket.verify_stock(alice)
    assert report.ok, report.problems
