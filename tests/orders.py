"""Building the commands tests send, so each test says only what matters to it."""

from __future__ import annotations

from decimal import Decimal

from docket.models.schemas import Address, OrderLineIn, PlaceOrder

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
