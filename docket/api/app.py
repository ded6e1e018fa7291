"""The FastAPI application: wiring, authentication, and domain errors as HTTP answers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from sqlalchemy.exc import OperationalError
from temporalio.service import RPCError, RPCStatusCode

from docket.adapters.payments import PaymentGateway, default_gateways
from docket.commands import Docket
from docket.models.access import Operator
from docket.models.errors import DocketError
from docket.store.migrate import unreachable

STATUS = {
    "NotFound": 404,
    "InvalidInput": 422,
    "OrderRejected": 422,
    "Forbidden": 403,
    "Unauthenticated": 401,
    "IllegalTransition": 409,
    "Refused": 409,
    "StaleState": 409,
    "StoreNotReady": 503,
}

bearer = HTTPBearer(auto_error=False, description="An operator's API token")


def create_app(docket: Docket, gateways: dict[str, PaymentGateway] | None = None) -> FastAPI:
    from docket.api import mail, orders, payments, stock
    from docket.callbacks import Callbacks

    app = FastAPI(
        title="docket",
        version="0.1.0",
        description="Orders, deliveries and stock as durable workflows. Every staff call carries an "
        "operator's bearer token; the operator's roles and shops decide what it may do.",
    )
    app.state.docket = docket
    app.state.callbacks = Callbacks(docket, gateways if gateways is not None else default_gateways())
    app.include_router(orders.router)
    app.include_router(stock.router)
    app.include_router(mail.router)
    app.include_router(payments.router)

    @app.exception_handler(DocketError)
    async def domain_error(_request: Request, error: DocketError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if error.kind == "Unauthenticated" else None
        return JSONResponse(
            status_code=STATUS.get(error.kind, 400),
            content={"error": error.kind, "message": str(error)},
            headers=headers,
        )

    @app.exception_handler(ValidationError)
    async def invalid_command(_request: Request, error: ValidationError) -> JSONResponse:
        """A path or query value that makes no valid command (an order id with a space, say)."""
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in error.errors())
        return JSONResponse(status_code=422, content={"error": "InvalidInput", "message": problems})

    @app.exception_handler(RPCError)
    async def temporal_unavailable(_request: Request, error: RPCError) -> JSONResponse:
        """Temporal down or overloaded: the caller may send the same request again; nothing is
        applied twice (order ids, stock references and the lifecycles see to that)."""
        if error.status not in UNAVAILABLE:
            raise error
        return _unavailable(f"the workflow service cannot take requests now ({error.status.name})")

    @app.exception_handler(OperationalError)
    async def database_unavailable(_request: Request, error: OperationalError) -> JSONResponse:
        return _unavailable(f"the database cannot be used now: {unreachable(error)}")

    @app.get("/health", tags=["meta"])
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


UNAVAILABLE = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED)


def _unavailable(why: str) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"error": "Unavailable", "message": f"{why}; send the same request again shortly"},
        headers={"Retry-After": "5"},
    )


def docket_of(request: Request) -> Docket:
    return request.app.state.docket  # type: ignore[no-any-return]


async def current_operator(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> Operator:
    from docket.models.errors import Unauthenticated

    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send an operator's API token: Authorization: Bearer <token>")
    operator = await docket_of(request).operator_by_token(credentials.credentials)
    if operator is None:
        raise Unauthenticated("unknown or revoked API token")
    return operator


CurrentOperator = Annotated[Operator, Depends(current_operator)]
CurrentDocket = Annotated[Docket, Depends(docket_of)]
