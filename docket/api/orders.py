"""Order routes: intake, moves (one per staff action) and reads."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import Field

from docket.api.app import CurrentDocket, CurrentOperator
from docket.models.inputs import Input
from docket.models.lifecycles import DeliveryState, OrderState
from docket.models.schemas import (
    MAX_PAGE,
    CancelOrder,
    ConfirmPayment,
    DeliveryPage,
    MoveDelivery,
    OrderPage,
    OrderRecord,
    OrderView,
    PlaceOrder,
    RecordRefund,
    RetryRefund,
    ReturnOrder,
)

router = APIRouter(prefix="/orders", tags=["orders"])
deliveries = APIRouter(prefix="/deliveries", tags=["orders"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or unknown API token"},
    403: {"description": "The operator may not do this, or not in this shop"},
    404: {"description": "Unknown order, shop, customer, SKU or delivery"},
    409: {"description": "The move is not allowed from the current state; the message lists what is"},
}


class Body(Input):
    """A staff request's body."""


class NoteBody(Body):
    note: str | None = Field(default=None, max_length=2000)


def _note(body: NoteBody | None) -> str | None:
    """A move's note; a move without one may be sent without a body."""
    return body.note if body is not None else None


class RefundBody(Body):
    note: str = Field(min_length=1, max_length=2000, description="How the money went back")
    reference: str | None = Field(default=None, max_length=200)


class CancelBody(Body):
    reason: str = Field(min_length=1, max_length=500)


@router.post(
    "", response_model=OrderView, responses={**ERRORS, 422: {"description": "Bad order, or rejected"}}
)
async def place_order(cmd: PlaceOrder, operator: CurrentOperator, docket: CurrentDocket) -> OrderView:
    """Place an order. `order_id` is the idempotency key: the same id again answers with the first
    result and starts nothing new. An order that cannot be served is rejected (422) naming the SKU."""
    return await docket.place_order(operator, cmd)


@router.get("", response_model=OrderPage, responses=ERRORS)
async def list_orders(
    operator: CurrentOperator,
    docket: CurrentDocket,
    shop_id: str | None = None,
    state: OrderState | None = None,
    customer_id: str | None = None,
    placed_from: dt.datetime | None = None,
    placed_until: dt.datetime | None = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> OrderPage:
    """Orders newest first, of the shops the operator works for."""
    return await docket.list_orders(
        operator,
        shop_id=shop_id,
        state=state,
        customer_id=customer_id,
        placed_from=placed_from,
        placed_until=placed_until,
        page=page,
        page_size=page_size,
    )


@router.get("/{order_id}", response_model=OrderRecord, responses=ERRORS)
async def show_order(order_id: str, operator: CurrentOperator, docket: CurrentDocket) -> OrderRecord:
    """The order with its deliveries, stock movements, notifications and whole history."""
    return await docket.order_record(operator, order_id)


@router.post("/{order_id}/confirm-payment", response_model=OrderView, responses=ERRORS)
async def confirm_payment(
    order_id: str, operator: CurrentOperator, docket: CurrentDocket, body: NoteBody | None = None
) -> OrderView:
    """A clerk confirms an offline payment."""
    return await docket.confirm_payment(
        operator, ConfirmPayment(order_id=order_id, operator_id=operator.operator_id, note=_note(body))
    )


@router.post("/{order_id}/deliveries/{delivery_no}/{move}", response_model=OrderView, responses=ERRORS)
async def move_delivery(
    order_id: str,
    delivery_no: Annotated[int, Field(ge=1, le=10_000)],
    move: Literal["pack", "mark_ready", "ship", "deliver"],
    operator: CurrentOperator,
    docket: CurrentDocket,
    body: NoteBody | None = None,
) -> OrderView:
    """Pack, mark ready, ship or deliver one delivery."""
    cmd = MoveDelivery(
        order_id=order_id,
        operator_id=operator.operator_id,
        delivery_no=delivery_no,
        trigger=move,
        note=_note(body),
    )
    return await docket.move_delivery(operator, cmd)


@router.post("/{order_id}/cancel", response_model=OrderView, responses=ERRORS)
async def cancel_order(
    order_id: str, body: CancelBody, operator: CurrentOperator, docket: CurrentDocket
) -> OrderView:
    """Cancel; refused (409) once a delivery is on its way."""
    return await docket.cancel_order(
        operator, CancelOrder(order_id=order_id, operator_id=operator.operator_id, reason=body.reason)
    )


@router.post("/{order_id}/return", response_model=OrderView, responses=ERRORS)
async def return_order(
    order_id: str, operator: CurrentOperator, docket: CurrentDocket, body: NoteBody | None = None
) -> OrderView:
    """Goods on their way came back (delivered, or brought back by the carrier, refused at the
    door); deliveries not yet on their way are withdrawn. Restocking them is POST /stock/returns."""
    return await docket.return_order(
        operator, ReturnOrder(order_id=order_id, operator_id=operator.operator_id, note=_note(body))
    )


@router.post("/{order_id}/refund", response_model=OrderView, responses=ERRORS)
async def record_refund(
    order_id: str, body: RefundBody, operator: CurrentOperator, docket: CurrentDocket
) -> OrderView:
    """Record a refund made by hand for a cancelled or returned order that waits for one; the
    note (how the money went back) is required."""
    cmd = RecordRefund(
        order_id=order_id, operator_id=operator.operator_id, note=body.note, reference=body.reference
    )
    return await docket.record_refund(operator, cmd)


@router.post("/{order_id}/refund-retry", response_model=OrderView, responses=ERRORS)
async def retry_refund(order_id: str, operator: CurrentOperator, docket: CurrentDocket) -> OrderView:
    """Ask the gateway again for a refund it refused (it is also retried on a timer)."""
    return await docket.retry_refund(
        operator, RetryRefund(order_id=order_id, operator_id=operator.operator_id)
    )


@deliveries.get("", response_model=DeliveryPage, responses=ERRORS)
async def list_deliveries(
    operator: CurrentOperator,
    docket: CurrentDocket,
    shop_id: str | None = None,
    warehouse_id: str | None = None,
    state: DeliveryState | None = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> DeliveryPage:
    """Deliveries oldest order first, of the shops the operator works for: a warehouse's work list
    (`state=allocated`: to pack; `state=ready`: to hand to the carrier); without `state`, every
    delivery not yet ended (shipped, voided, deallocated or returned). An unknown warehouse gets
    404."""
    return await docket.list_deliveries(
        operator, shop_id=shop_id, warehouse_id=warehouse_id, state=state, page=page, page_size=page_size
    )
