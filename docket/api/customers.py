"""Customer routes: a storefront or a call centre registers the customers it places orders for."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from docket.api.app import CurrentDocket, CurrentOperator
from docket.models.schemas import (
    MAX_PAGE,
    CustomerChangeView,
    CustomerDetails,
    CustomerPage,
    CustomerSaved,
    CustomerView,
    Identifier,
    Saved,
)

router = APIRouter(prefix="/customers", tags=["customers"])
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or unknown API token"},
    403: {"description": "The operator may not register or read customers"},
    404: {"description": "Unknown customer"},
}
CustomerId = Annotated[Identifier, Path(description="The storefront's own customer id")]


@router.put(
    "/{customer_id}",
    response_model=CustomerSaved,
    status_code=200,
    responses={**ERRORS, 201: {"model": CustomerSaved, "description": "Registered"}},
)
async def save_customer(
    customer_id: CustomerId,
    details: CustomerDetails,
    response: Response,
    operator: CurrentOperator,
    docket: CurrentDocket,
) -> CustomerSaved:
    """Register the customer (201), or bring their name and e-mail address to these (200). The
    same details again change nothing (`outcome: unchanged`). Customers are shared by all shops."""
    saved = await docket.save_customer(operator, customer_id, details)
    if saved.outcome is Saved.created:
        response.status_code = 201
    return saved


@router.get("", response_model=CustomerPage, responses=ERRORS)
async def find_customers(
    operator: CurrentOperator,
    docket: CurrentDocket,
    q: Annotated[
        str | None, Query(max_length=200, description="Part of the id, name or e-mail address, any case")
    ] = None,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 1,
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
) -> CustomerPage:
    """Customers by name whose id, name or e-mail address holds `q` (a caller on the phone says who
    they are); every customer without `q`."""
    return await docket.find_customers(operator, q, page, page_size)


@router.get("/{customer_id}", response_model=CustomerView, responses=ERRORS)
async def show_customer(customer_id: str, operator: CurrentOperator, docket: CurrentDocket) -> CustomerView:
    """The customer's name and the address docket's mails go to."""
    return await docket.customer(operator, customer_id)


@router.get("/{customer_id}/history", response_model=list[CustomerChangeView], responses=ERRORS)
async def customer_history(
    customer_id: str, operator: CurrentOperator, docket: CurrentDocket
) -> list[CustomerChangeView]:
    """Who registered or changed the customer, when, and the name and address it then had."""
    return await docket.customer_history(operator, customer_id)
