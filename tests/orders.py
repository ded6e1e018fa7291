"""Building the commands tests send, so each test says only what matters to it."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from docket.models.schemas import Address, ConfirmPayment, MoveDelivery, OrderLineIn, PlaceOrder
from docket.store import queries

if TYPE_CHECKING:
    from tests.conftest import Shop

ADDRESS = Address(name="Ada Buyer", line1="1 Main St", city="Berlin", postcode="10115", country="DE")


def place(order_id: str, *lines: tuple[str, int], shop_id: str = "alpha", **extra: object) -> PlaceOrder:
    return PlaceOrder(
        order_id=order_id,
        shop_id=shop_id,
        customer_id="c1",
        lines=[
            OrderLineIn(sku=sku, quantity=qty, unit_price=Decimal("9.50"), currency="EUR")
            for sku, qty in lines
        ],
        shipping_address=ADDRESS,
        **extra,  # type: ignore[arg-type]
    )


async def confirm(shop: Shop, order_id: str, operator: str = "alice"):  # type: ignore[no-untyped-def]
    return await shop.docket.confirm_payment(
        await shop.op(operator), ConfirmPayment(order_id=order_id, operator_id=operator)
    )


async def move(shop: Shop, order_id: str, no: int, *triggers: str, operator: str = "alice"):  # type: ignore[no-untyped-def]
    view = None
    for trigger in triggers:
        cmd = MoveDelivery(order_id=order_id, operator_id=operator, delivery_no=no, trigger=trigger)
        view = await shop.docket.move_delivery(await shop.op(operator), cmd)
    return view


async def view_of(shop: Shop, order_id: str):  # type: ignore[no-untyped-def]
    return await shop.docket.read(lambda s: queries.order_view(s, order_id))
