"""Mail routes: what was sent to whom, one mail as it reads, and sending failed mails again."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from docket.api.app import CurrentDocket, CurrentOperator
from docket.models.schemas import MAX_PAGE, MailPage, MailRetried, MailState, RenderedMail, RetryMail

router = APIRouter(prefix="/mail", tags=["mail"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or unknown API token"},
    403: {"description": "The operator may not do this, or not in this shop"},
    404: {"description": "Unknown mail or order"},
}


@router.get("", response_model=MailPage, responses=ERRORS)
async def list_mail(
    operator: CurrentOperator,
    docket: CurrentDocket,
    shop_id: str | None = None,
    order_id: str | None = None,
    state: MailState | None = None,
    recipient: str | None = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> MailPage:
    """Mails newest first, in the shops the operator works for."""
    return await docket.list_mail(
        operator,
        shop_id=shop_id,
        order_id=order_id,
        state=state,
        recipient=recipient,
        page=page,
        page_size=page_size,
    )


@router.get("/{outbox_id}", response_model=RenderedMail, responses=ERRORS)
async def show_mail(outbox_id: int, operator: CurrentOperator, docket: CurrentDocket) -> RenderedMail:
    """One mail: its delivery record and its subject, text and HTML as rendered from its row."""
    return await docket.show_mail(operator, outbox_id)


@router.post("/retry", response_model=MailRetried, responses=ERRORS)
async def retry_mail(cmd: RetryMail, operator: CurrentOperator, docket: CurrentDocket) -> MailRetried:
    """Failed mails (these ids, or every failed mail of an order) back to pending, and delivered."""
    return await docket.retry_mail(operator, cmd)
