"""Payment routes: gateway callbacks (signed, no operator token) and the callback inbox."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from docket.adapters.payments import SIGNATURE, TIMESTAMP, BadCallback
from docket.api.app import CurrentOperator
from docket.callbacks import Callbacks
from docket.models.schemas import CallbackView

router = APIRouter(prefix="/payments", tags=["payments"])
KINDS = {
    400: "Malformed",
    401: "Unauthenticated",
    404: "NotFound",
    409: "Refused",
    422: "InvalidInput",
    503: "Unavailable",
}


def callbacks_of(request: Request) -> Callbacks:
    return request.app.state.callbacks  # type: ignore[no-any-return]


@router.post(
    "/{gateway}/callback",
    responses={
        200: {"description": "Processed: `{outcome}`; a duplicate answers with the first outcome"},
        400: {"description": "The body is not JSON"},
        401: {"description": "Bad or missing signature, stale timestamp, or a source not allowed"},
        404: {"description": "Unknown gateway, or an order the shop does not have"},
        409: {"description": "The order is closed: nothing changed"},
        422: {"description": "Not a payment callback, or amount or currency do not match"},
        503: {
            "description": "The callback could not be stored, or was stored but the order's workflow did"
            " not answer in time (no worker running): send it again"
        },
    },
)
async def callback(gateway: str, request: Request) -> JSONResponse:
    """A gateway's signed callback: `X-Signature-Timestamp` (Unix seconds) and `X-Signature`
    (`sha256=` + hex HMAC-SHA256 over `<timestamp>.<raw body>` with the shop's secret)."""
    body = await request.body()
    source = request.client.host if request.client else None
    try:
        answered = await callbacks_of(request).receive(
            gateway, body, request.headers.get(TIMESTAMP), request.headers.get(SIGNATURE), source
        )
    except BadCallback as refused:
        return JSONResponse(
            status_code=refused.status,
            content={"error": KINDS.get(refused.status, "Refused"), "message": str(refused)},
        )
    content: dict[str, object] = {"outcome": answered.outcome, "duplicate": answered.duplicate}
    if answered.status >= 400:
        content = {"error": KINDS.get(answered.status, "Refused"), "message": answered.outcome}
    return JSONResponse(status_code=answered.status, content=content)


STAFF: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or unknown API token"},
    403: {"description": "The operator may not read or replay callbacks"},
}


@router.get("/inbox", response_model=list[CallbackView], responses=STAFF)
async def inbox(request: Request, operator: CurrentOperator, all: bool = False) -> list[CallbackView]:
    """Stored callbacks not processed yet (with `all`: every one, newest 500)."""
    return await callbacks_of(request).inbox(operator, every=all)


@router.post("/inbox/replay", response_model=list[CallbackView], responses=STAFF)
async def replay(request: Request, operator: CurrentOperator) -> list[CallbackView]:
    """Process the stored callbacks not processed yet; answers them as they now are."""
    return await callbacks_of(request).replay(operator)
