"""Stock routes: receipts, returns to stock, adjustments, levels and the ledger check."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import Field

from docket.api.app import CurrentDocket, CurrentOperator
from docket.models.inputs import Input
from docket.models.schemas import (
    AdjustStock,
    Identifier,
    LedgerReport,
    ReceiveStock,
    StockLevel,
    StockMoveKind,
    StockReceived,
)

router = APIRouter(prefix="/stock", tags=["stock"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or unknown API token"},
    403: {"description": "The operator may not manage this warehouse's stock"},
    404: {"description": "Unknown warehouse or SKU"},
    409: {"description": "The change would leave less on hand than is reserved"},
}


class Body(Input):
    reference: Identifier = Field(description="Delivery note or count sheet: the idempotency key")
    warehouse_id: Identifier
    sku: Identifier


class ReceiptBody(Body):
    quantity: int = Field(gt=0, le=10_000_000, strict=True)
    note: str | None = Field(default=None, max_length=2000)


class ReturnBody(Body):
    quantity: int = Field(gt=0, le=10_000_000, strict=True)
    order_id: str
    note: str = Field(min_length=1, max_length=2000)


class AdjustmentBody(Body):
    delta: int = Field(strict=True)
    note: str = Field(min_length=1, max_length=2000)


@router.post("/receipts", response_model=StockReceived, responses=ERRORS)
async def receive(body: ReceiptBody, operator: CurrentOperator, docket: CurrentDocket) -> StockReceived:
    """Goods arrived; the oldest waiting back orders take them at once. A repeated reference is a no-op."""
    cmd = ReceiveStock(operator_id=operator.operator_id, **body.model_dump())
    return await docket.change_stock(operator, cmd)


@router.post("/returns", response_model=StockReceived, responses=ERRORS)
async def return_to_stock(
    body: ReturnBody, operator: CurrentOperator, docket: CurrentDocket
) -> StockReceived:
    """Returned goods go back on the shelf, with a note: at most what the order sent out of the SKU,
    less what came back from it before (409 beyond that, saying how many more may)."""
    cmd = ReceiveStock(operator_id=operator.operator_id, kind=StockMoveKind.return_, **body.model_dump())
    return await docket.change_stock(operator, cmd)


@router.post("/adjustments", response_model=StockReceived, responses=ERRORS)
async def adjust(body: AdjustmentBody, operator: CurrentOperator, docket: CurrentDocket) -> StockReceived:
    """A count correction; never below what is reserved."""
    cmd = AdjustStock(operator_id=operator.operator_id, **body.model_dump())
    return await docket.change_stock(operator, cmd)


@router.get("", response_model=list[StockLevel], responses=ERRORS)
async def levels(
    operator: CurrentOperator, docket: CurrentDocket, warehouse_id: str | None = None, sku: str | None = None
) -> list[StockLevel]:
    """On hand, reserved, available and back-ordered per warehouse and SKU; filtered by warehouse or SKU (404
    for one docket does not know)."""
    return await docket.stock_levels(operator, warehouse_id, sku)


@router.get(
    "/verify", response_model=LedgerReport, responses={**ERRORS, 500: {"description": "The ledger is broken"}}
)
async def verify(operator: CurrentOperator, docket: CurrentDocket) -> JSONResponse:
    """200 when the counters equal the ledger and nothing was over-reserved; 500 with the rows when not."""
    report = await docket.verify_stock(operator)
    return JSONResponse(status_code=200 if report.ok else 500, content=report.model_dump(mode="json"))
