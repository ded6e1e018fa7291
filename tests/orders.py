"""Building the commands tests send, so each test says only what matters to it."""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal
from typing import TYPE_CHECKING

from sqlalchemy import select

from docket.adapters.payments import sign
from docket.models.messages import ConfirmPaymentMove
from docket.models.schemas import Address, ConfirmPayment, MoveDelivery, OrderLineIn, PlaceOrder
from docket.store import queries
from docket.store.tables import PaymentTransaction
from tests.catalogue import ALPHA_SECRET

if TYPE_CHECKING:
    from docket.callbacks import Answered, Callbacks
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


def confirmation(order_id: str, move_id: str, at: dt.datetime) -> ConfirmPaymentMove:
    """The move a clerk's confirmation of `order_id` asks of the activity, mail sent after it."""
    return ConfirmPaymentMove(
        move_id=move_id,
        at=at,
        deliver_mail=True,
        command=ConfirmPayment(order_id=order_id, operator_id="alice"),
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
    return await shop.docket.look_up(lambda tx: queries.order_view(tx, order_id))


async def held_payment_went_through(shop: Shop, order_id: str, event_id: str) -> dict[str, object]:
    """The sandbox gateway's callback saying the order's payment, held for review, went through."""
    held = await shop.docket.read(
        lambda s: s.scalars(select(PaymentTransaction).where(PaymentTransaction.order_id == order_id)).one()
    )
    return {
        "event_id": event_id,
        "shop_id": "alpha",
        "order_id": order_id,
        "operation": held.operation.value,
        "amount": str(held.amount),
        "currency": held.currency,
        "result": "ok",
        "reference": held.reference,
        "idempotency_key": held.key,
    }


async def send_callback(callbacks: Callbacks, fact: dict[str, object]) -> Answered:
    """`fact` as the sandbox gateway sends it to shop alpha: signed, from the loopback address."""
    body, stamp = json.dumps(fact).encode(), int(time.time())
    return await callbacks.receive("sandbox", body, str(stamp), sign(ALPHA_SECRET, stamp, body), "127.0.0.1")
