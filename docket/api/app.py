"""The FastAPI application: wiring, authentication, and domain errors as HTTP answers."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from typing import Annotated

from fastapi import Depends, FastAPI, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError
from sqlalchemy.exc import DataError, OperationalError
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.service import RPCError, RPCStatusCode

from docket.adapters.payments import PaymentGateway, default_gateways
from docket.commands import Docket
from docket.models.access import Operator
from docket.models.errors import DocketError, InvalidInput, StoreNotReady
from docket.models.inputs import problems
from docket.store.migrate import require_current, unreachable

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
    "Unavailable": 503,
}

bearer = HTTPBearer(auto_error=False, description="An operator's API token")


def create_app(docket: Docket, gateways: dict[str, PaymentGateway] | None = None) -> FastAPI:
    from docket.api import customers, mail, orders, payments, stock
    from docket.callbacks import Callbacks

    app = FastAPI(
        title="docket",
        version="0.1.0",
        description="Orders, deliveries and stock as durable workflows. Every staff call carries an "
        "operator's bearer token; the operator's roles and shops decide what it may do.",
    )
    app.add_middleware(BodyLimit, limit=MAX_BODY)
    app.state.docket = docket
    app.state.callbacks = Callbacks(docket, gateways if gateways is not None else default_gateways())
    app.include_router(orders.router)
    app.include_router(orders.deliveries)
    app.include_router(customers.router)
    app.include_router(stock.router)
    app.include_router(mail.router)
    app.include_router(payments.router)

    @app.exception_handler(DocketError)
    async def domain_error(_request: Request, error: DocketError) -> JSONResponse:
        headers = {
            "Unauthenticated": {"WWW-Authenticate": "Bearer"},
            "Unavailable": {"Retry-After": "5"},
        }.get(error.kind)
        return JSONResponse(
            status_code=STATUS.get(error.kind, 400),
            content={"error": error.kind, "message": str(error)},
            headers=headers,
        )

    @app.exception_handler(HTTPException)
    async def no_such_route(request: Request, error: HTTPException) -> Response:
        """Routing's own refusals (no such path, a method the path does not take) in the shape
        every other refusal has, saying what is there instead."""
        if error.status_code == 404:
            said = {
                "error": "NotFound",
                "message": f"no route {request.method} {request.url.path}: the routes are listed at /docs",
            }
        elif error.status_code == 405:
            allowed = next((v for k, v in (error.headers or {}).items() if k.lower() == "allow"), "")
            said = {
                "error": "MethodNotAllowed",
                "message": f"{request.method} is not allowed on {request.url.path}: it takes {allowed}",
            }
        elif error.status_code == 413:
            said = {"error": "TooLarge", "message": str(error.detail)}
        else:
            said = {"error": type(error).__name__, "message": str(error.detail)}
        return JSONResponse(status_code=error.status_code, content=said, headers=error.headers)

    @app.exception_handler(ValidationError)
    async def invalid_command(_request: Request, error: ValidationError) -> JSONResponse:
        """A path or query value that makes no valid command (an order id with a space, say)."""
        return JSONResponse(
            status_code=422, content={"error": "InvalidInput", "message": problems(error.errors())}
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> Response:
        """A malformed request answers in the shape every other refusal has, `error` and a
        `message` naming each problem, and keeps FastAPI's `detail` list for programs."""
        content = {"error": "InvalidInput", "message": problems(error.errors()), "detail": error.errors()}
        # ASCII: the input it repeats may hold what UTF-8 cannot encode (an unpaired surrogate)
        body = json.dumps(jsonable_encoder(content), ensure_ascii=True)
        return Response(body, status_code=422, media_type="application/json")

    @app.exception_handler(RPCError)
    async def temporal_unavailable(_request: Request, error: RPCError) -> JSONResponse:
        """Temporal down or overloaded: the caller may send the same request again; nothing is
        applied twice (order ids, stock references and the lifecycles see to that)."""
        if error.status not in UNAVAILABLE:
            raise error
        return _unavailable(f"the workflow service cannot take requests now ({error.status.name})")

    @app.exception_handler(DataError)
    async def value_the_database_refuses(_request: Request, error: DataError) -> JSONResponse:
        """A path or query value the database cannot compare (text holding NUL, on PostgreSQL):
        the request is wrong, not the server."""
        said = str(error.orig).splitlines()[0] if error.orig else "refused"
        return JSONResponse(
            status_code=422,
            content={"error": "InvalidInput", "message": f"a value the database cannot take: {said}"},
        )

    @app.exception_handler(OperationalError)
    async def database_unavailable(_request: Request, error: OperationalError) -> JSONResponse:
        return _unavailable(f"the database cannot be used now: {unreachable(error)}")

    @app.get("/health", tags=["meta"])
    async def health() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/ready", tags=["meta"], responses={503: {"description": "What cannot be reached, and why"}})
    async def ready() -> JSONResponse:
        """Readiness: the database is reachable at this docket's schema revision and Temporal
        answers its health check. 503 names what is not ready (a load balancer waits for 200).
        `workers` says whether any worker polls docket's task queue: without one, moves wait and
        are answered 503 after the answer timeout, but reads, callbacks (stored) and this API
        still serve, so it does not make the API unready."""
        checks = {"database": await _database_ready(docket), "temporal": await _temporal_ready(docket)}
        ok = all(said == "ok" for said in checks.values())
        if checks["temporal"] == "ok":
            checks["workers"] = await _workers(docket)
        return JSONResponse(status_code=200 if ok else 503, content=checks)

    return app


MAX_BODY = 1024 * 1024  # bytes: an order of 200 lines is about 40 KB


class BodyLimit:
    """Refuses a request body of more than `limit` bytes (413) without holding it: by its
    Content-Length when it gives one, else as it arrives. Every route, the unauthenticated gateway
    callbacks included, reads its body whole."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await JSONResponse(
                status_code=413, content={"error": "TooLarge", "message": self._said(int(declared))}
            )(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, f"the body is more than {self.limit:,} bytes, the most taken")
            return message

        await self.app(scope, counted, send)

    def _said(self, size: int) -> str:
        return f"the body is {size:,} bytes; at most {self.limit:,} are taken"


UNAVAILABLE = (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED)


def _unavailable(why: str) -> JSONResponse:
    return JSONResponse(
        status_code=503,
        content={"error": "Unavailable", "message": f"{why}; send the same request again shortly"},
        headers={"Retry-After": "5"},
    )


async def _database_ready(docket: Docket) -> str:
    try:
        await asyncio.to_thread(require_current, docket.sessions.kw["bind"])
    except StoreNotReady as error:
        return str(error)
    return "ok"


async def _temporal_ready(docket: Docket) -> str:
    try:
        serving = await docket.temporal.service_client.check_health(timeout=dt.timedelta(seconds=2))
    except RPCError as error:
        return f"cannot reach Temporal: {error.status.name} {error.message}"
    return "ok" if serving else "Temporal answers but does not serve workflows yet"


async def _workers(docket: Docket) -> str:
    """Workers that polled docket's task queue lately (the server remembers a poller for a few
    minutes after its last poll)."""
    request = DescribeTaskQueueRequest(
        namespace=docket.temporal.namespace,
        task_queue=TaskQueue(name=docket.task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    try:
        described = await docket.temporal.workflow_service.describe_task_queue(
            request, timeout=dt.timedelta(seconds=2)
        )
    except RPCError as error:
        return f"cannot tell: {error.status.name} {error.message}"
    seen = len({poller.identity for poller in described.pollers})
    if not seen:
        return f"no worker has polled task queue {docket.task_queue} lately: start docket worker"
    return f"{seen} polling task queue {docket.task_queue}"


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
    _refuse_unknown_query(request)
    return operator


def _refuse_unknown_query(request: Request) -> None:
    """A staff call's query parameters must be ones its route takes: `GET /orders?shop=b` would
    otherwise answer with every shop's orders, as if filtered. (Gateways' callbacks take none and
    are not checked: what a gateway appends to its URL changes nothing.)"""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    allowed = _query_names(route.dependant)
    unknown = [name for name in dict.fromkeys(request.query_params) if name not in allowed]
    if unknown:
        takes = f"takes {', '.join(allowed)}" if allowed else "takes no query parameters"
        listed = ", ".join(repr(name) for name in unknown)
        raise InvalidInput(f"unknown query parameter {listed}: {request.method} {route.path} {takes}")


def _query_names(dependant: Dependant) -> tuple[str, ...]:
    names = [field.alias for field in dependant.query_params]
    for sub in dependant.dependencies:
        names.extend(_query_names(sub))
    return tuple(dict.fromkeys(names))


CurrentOperator = Annotated[Operator, Depends(current_operator)]
CurrentDocket = Annotated[Docket, Depends(docket_of)]
