"""What staff and storefronts ask of docket, shared by the CLI and the API: who may, whether the
request makes sense, then the workflow that carries it out. No HTTP and no terminal here."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from docket.models.access import DELIVERY_TRIGGER_ACTION, Action, Operator
from docket.models.countries import check_country
from docket.models.currencies import check_currency, decimal_places
from docket.models.errors import (
    Forbidden,
    InvalidInput,
    NotFound,
    OrderRejected,
    Refused,
    Unavailable,
    from_kind,
)
from docket.models.lifecycles import OrderState
from docket.models.messages import DeliverMail, MailDue, StockChange
from docket.models.schemas import (
    AdjustStock,
    CancelOrder,
    ConfirmPayment,
    CustomerChangeView,
    CustomerDetails,
    CustomerPage,
    CustomerSaved,
    CustomerView,
    DeliveryPage,
    LedgerReport,
    MailPage,
    MailRetried,
    MoveDelivery,
    OrderPage,
    OrderRecord,
    OrderView,
    PaymentFlow,
    PlaceOrder,
    ReceiveStock,
    RecordRefund,
    RenderedMail,
    RetryMail,
    RetryRefund,
    ReturnOrder,
    StockLevel,
    StockMoveKind,
    StockReceived,
)
from docket.rendering import Rendered, Renderer, RenderError, message_id
from docket.store import catalogue, outbox, queries, rows, stock
from docket.store.direct import Tx, reading
from docket.store.engine import SessionFactory, engine_of, read_session, serialised_writes
from docket.store.tables import Customer, Product, ShopWarehouse, StockMovement, Warehouse
from docket.workflows.mail import MailWorkflow, mail_workflow_id
from docket.workflows.order import OrderWorkflow, workflow_id
from docket.workflows.stock import StockWorkflow, stock_workflow_id

T = TypeVar("T")


@dataclass(frozen=True)
class Docket:
    """The handles every command needs."""

    temporal: Client
    sessions: SessionFactory
    task_queue: str
    workflow_id_prefix: str = ""
    renderer: Renderer = field(default_factory=lambda: Renderer("docket@localhost"))
    answer_timeout: float = 30.0  # seconds a command waits for a workflow's answer
    # An order never changes shop: remember it for authorising the moves that follow.
    _order_shops: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    # --- orders ---------------------------------------------------------------------------------

    async def place_order(self, operator: Operator, cmd: PlaceOrder) -> OrderView:
        """Start the order's workflow and answer with the order as placed. The order id is the
        idempotency key: the same order again answers with what was recorded the first time; the
        same id with another shop, customer, payment flow, currency or lines is refused, naming what differs
        (a storefront reusing an id must not believe a second order placed)."""
        operator.require(Action.place_order, cmd.shop_id)
        cmd = cmd.model_copy(update={"operator_id": operator.operator_id})

        def check(tx: Tx) -> None:  # a known order id answers as placed, whatever the catalogue says
            if rows.order_shop(tx, cmd.order_id) is None:
                _check_money(cmd)
                _check_country(cmd)
                _check_catalogue(tx, cmd)

        await self.look_up(check)
        try:
            # one request: the workflow starts with the update in its first task
            start = WithStartWorkflowOperation(
                OrderWorkflow.run,
                cmd,
                id=workflow_id(cmd.order_id, self.workflow_id_prefix),
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            )
            view = await self.answer(
                self.temporal.execute_update_with_start_workflow(
                    OrderWorkflow.placement, start_workflow_operation=start
                ),
                f"order {cmd.order_id} was sent",
                "placing it again with the same order id is safe: it answers with the order once placed",
            )
        except WorkflowAlreadyStartedError:
            view = await self.look_up(lambda tx: queries.order_view(tx, cmd.order_id))
        except (Unavailable, asyncio.CancelledError):
            # the start's own future holds the abandoned call as well: read it, or asyncio reports
            # it unread on standard error
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await start.workflow_handle()
            raise
        if view.state is OrderState.rejected:  # its lines belong to no delivery: read them
            lines = await self.look_up(lambda tx: rows.order_lines(tx, cmd.order_id))
            _require_same_order(cmd, view, [(line.sku, line.quantity, line.unit_price) for line in lines])
            raise OrderRejected(f"order {view.order_id} rejected: {view.rejection}")
        placed = sorted(
            (line.line_no, line.sku, line.quantity, line.unit_price)
            for d in view.deliveries
            for line in d.lines
        )
        _require_same_order(cmd, view, [line[1:] for line in placed])
        self._know_shop(view.order_id, view.shop_id)  # its moves need not look it up
        return view

    async def confirm_payment(self, operator: Operator, cmd: ConfirmPayment) -> OrderView:
        await self._require_order(operator, Action.confirm_payment, cmd.order_id)
        return await self._update(cmd.order_id, OrderWorkflow.confirm_payment, cmd)

    async def move_delivery(self, operator: Operator, cmd: MoveDelivery) -> OrderView:
        await self._require_order(operator, DELIVERY_TRIGGER_ACTION[cmd.trigger], cmd.order_id)
        return await self._update(cmd.order_id, OrderWorkflow.move_delivery, cmd)

    async def cancel_order(self, operator: Operator, cmd: CancelOrder) -> OrderView:
        await self._require_order(operator, Action.cancel_order, cmd.order_id)
        return await self._update(cmd.order_id, OrderWorkflow.cancel, cmd)

    async def return_order(self, operator: Operator, cmd: ReturnOrder) -> OrderView:
        await self._require_order(operator, Action.return_order, cmd.order_id)
        return await self._update(cmd.order_id, OrderWorkflow.return_goods, cmd)

    async def record_refund(self, operator: Operator, cmd: RecordRefund) -> OrderView:
        await self._require_order(operator, Action.record_refund, cmd.order_id)
        return await self._update(cmd.order_id, OrderWorkflow.record_refund, cmd)

    async def retry_refund(self, operator: Operator, cmd: RetryRefund) -> OrderView:
        await self._require_order(operator, Action.record_refund, cmd.order_id)
        return await self._update(cmd.order_id, OrderWorkflow.retry_refund, cmd)

    async def order_record(self, operator: Operator, order_id: str) -> OrderRecord:
        await self._require_order(operator, Action.read_orders, order_id)
        return await self.read(lambda session: queries.order_record(session, order_id))

    async def list_orders(self, operator: Operator, **filters: Any) -> OrderPage:
        """A filter naming a customer docket does not know is refused (404), not answered with an
        empty page: a mistyped id must not read as 'no orders'."""
        operator.require(Action.read_orders, filters.get("shop_id"))
        shops = operator.shops_seen()

        def listed(session: Session) -> OrderPage:
            _require_known(session, Customer, filters.get("customer_id"), "customer")
            return queries.list_orders(session, shops=shops, **filters)

        return await self.read(listed)

    async def list_deliveries(self, operator: Operator, **filters: Any) -> DeliveryPage:
        """A warehouse docket does not know is refused (404), not answered with an empty page."""
        operator.require(Action.read_orders, filters.get("shop_id"))
        shops = operator.shops_seen()

        def listed(session: Session) -> DeliveryPage:
            _require_known(session, Warehouse, filters.get("warehouse_id"), "warehouse")
            return queries.list_deliveries(session, shops=shops, **filters)

        return await self.read(listed)

    async def _require_order(self, operator: Operator, action: Action, order_id: str) -> None:
        operator.require(action)
        shop_id = self._order_shops.get(order_id)
        if shop_id is None:
            shop_id = await self.look_up(lambda tx: rows.order_shop(tx, order_id))
            if shop_id is None:
                raise NotFound(f"unknown order {order_id}")
            self._know_shop(order_id, shop_id)
        operator.require(action, shop_id)

    def _know_shop(self, order_id: str, shop_id: str) -> None:
        if len(self._order_shops) > 100_000:
            self._order_shops.clear()
        self._order_shops[order_id] = shop_id

    async def _update(self, order_id: str, update: Any, cmd: Any) -> OrderView:
        handle: WorkflowHandle[Any, Any] = self.temporal.get_workflow_handle(
            workflow_id(order_id, self.workflow_id_prefix)
        )
        try:
            return await self.answer(  # type: ignore[no-any-return]
                handle.execute_update(update, cmd),
                f"{_move_name(update, cmd)} was sent to order {order_id}",
                f"it may still be carried out once one runs: docket order show {order_id} tells",
            )
        except WorkflowUpdateFailedError as failed:
            raise domain_error(failed) from None
        except RPCError as error:
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise
            view = await self.look_up(lambda tx: queries.order_view(tx, order_id))
            raise Refused(
                f"order {order_id} is {view.state.value} and closed: nothing more can move"
            ) from None

    # --- stock ----------------------------------------------------------------------------------

    async def change_stock(self, operator: Operator, cmd: ReceiveStock | AdjustStock) -> StockReceived:
        """Receive, return to stock or adjust; the reference makes a repeat a no-op that answers
        with the first result. Another change under a reference already recorded is refused,
        naming the first (a typed-over delivery note number must not pass as counted)."""
        operator.require(Action.manage_stock)
        if isinstance(cmd, ReceiveStock) and cmd.order_id:  # goods back from an order of their shop
            await self._require_order(operator, Action.manage_stock, cmd.order_id)

        def check(session: Session) -> None:
            stock.check_item(Tx.of(session), cmd.warehouse_id, cmd.sku)
            _require_warehouse(session, operator, cmd.warehouse_id)

        await self.read(check)
        change = StockChange(
            move_id=f"stock/{cmd.reference}",
            at=dt.datetime.now(dt.UTC),
            command=cmd,
            workflow_id_prefix=self.workflow_id_prefix,
        )
        workflow = stock_workflow_id(cmd.reference, self.workflow_id_prefix)
        try:
            handle = await self.temporal.start_workflow(
                StockWorkflow.run,
                change,
                id=workflow,
                task_queue=self.task_queue,
                # A refused change recorded nothing: the same reference may be tried again.
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            )
            return await self.answer(
                handle.result(),
                f"stock change {cmd.reference} was sent",
                SAME_REFERENCE,
            )
        except WorkflowAlreadyStartedError:
            first = await self.answer(
                self.temporal.get_workflow_handle_for(StockWorkflow.run, workflow).result(),
                f"stock change {cmd.reference} was sent before",
                SAME_REFERENCE,
            )
            await self.read(lambda session: _require_same_change(session, cmd))
            return first.model_copy(update={"duplicate": True})
        except WorkflowFailureError as failed:
            raise domain_error(failed) from None

    async def stock_levels(
        self, operator: Operator, warehouse_id: str | None, sku: str | None
    ) -> list[StockLevel]:
        operator.require(Action.read_stock)

        def levels(session: Session) -> list[StockLevel]:
            _require_known(session, Warehouse, warehouse_id, "warehouse")
            _require_known(session, Product, sku, "SKU")
            return stock.levels(session, warehouse_id, sku)

        return await self.read(levels)

    async def verify_stock(self, operator: Operator) -> LedgerReport:
        operator.require(Action.read_stock)
        return await self.read(stock.verify)

    # --- mail -----------------------------------------------------------------------------------

    async def list_mail(self, operator: Operator, **filters: Any) -> MailPage:
        """The mail of an order docket does not know, or of another shop's, is refused (404, 403)."""
        operator.require(Action.read_orders, filters.get("shop_id"))
        if filters.get("order_id"):
            await self._require_order(operator, Action.read_orders, filters["order_id"])
        shops = operator.shops_seen()
        return await self.read(lambda session: outbox.list_mail(session, shops=shops, **filters))

    async def show_mail(self, operator: Operator, outbox_id: int) -> RenderedMail:
        """The mail as it is (or would be) sent, rendered with today's templates."""
        operator.require(Action.read_orders)
        row, shop_id = await self.read(lambda session: outbox.mail_row(session, outbox_id))
        operator.require(Action.read_orders, shop_id)
        letter = outbox.letter(row, shop_id)
        rendered: Rendered | None = None
        problem: str | None = None
        try:
            rendered = self.renderer.render(shop_id, letter.kind, letter.template_key, letter.data)
        except RenderError as error:
            problem = str(error)
        return RenderedMail(
            mail=queries.mail_view(row),
            message_id=message_id(letter.key, self.renderer.domain),
            subject=rendered.subject if rendered else None,
            text=rendered.text if rendered else None,
            html=rendered.html if rendered else None,
            render_error=problem,
            data=letter.data,
        )

    async def retry_mail(self, operator: Operator, cmd: RetryMail) -> MailRetried:
        """Failed mails back to pending, then their order's workflow (or, once it has closed, a
        mail workflow of the order) delivers them."""
        operator.require(Action.retry_mail)
        if cmd.order_id:
            await self._require_order(operator, Action.retry_mail, cmd.order_id)
        for outbox_id in cmd.outbox_ids:

            def shop_of(session: Session, n: int = outbox_id) -> str:
                return outbox.mail_row(session, n)[1]

            operator.require(Action.retry_mail, await self.read(shop_of))

        def put_back() -> list[tuple[int, str]]:
            with serialised_writes(engine_of(self.sessions)), self.sessions.begin() as session:
                return outbox.retry(session, cmd.outbox_ids, cmd.order_id)

        changed = await asyncio.to_thread(put_back)
        orders = sorted({order_id for _, order_id in changed})
        for order_id in orders:
            await self._mail_due(order_id, [n for n, o in changed if o == order_id])
        return MailRetried(retried=[n for n, _ in changed], orders=orders)

    async def _mail_due(self, order_id: str, outbox_ids: list[int]) -> None:
        due = MailDue(outbox_ids=outbox_ids)
        handle = self.temporal.get_workflow_handle(workflow_id(order_id, self.workflow_id_prefix))
        try:
            await handle.signal(OrderWorkflow.mail_due, due)
            return
        except RPCError as error:
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise
        await self.temporal.start_workflow(
            MailWorkflow.run,
            DeliverMail(order_id=order_id),
            id=mail_workflow_id(order_id, self.workflow_id_prefix),
            task_queue=self.task_queue,
            start_signal="mail_due",
            start_signal_args=[due],
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        )

    # --- customers (shared by all shops) -------------------------------------------------------

    async def save_customer(
        self, operator: Operator, customer_id: str, details: CustomerDetails
    ) -> CustomerSaved:
        """Register a customer, or change the name and address docket mails; saving the same
        details again changes nothing."""
        operator.require(Action.save_customers)

        def save() -> CustomerSaved:
            with serialised_writes(engine_of(self.sessions)), self.sessions.begin() as session:
                return catalogue.save_customer(
                    session, customer_id, details, operator.operator_id, dt.datetime.now(dt.UTC)
                )

        return await asyncio.to_thread(save)

    async def customer(self, operator: Operator, customer_id: str) -> CustomerView:
        operator.require(Action.read_orders)
        return await self.read(lambda session: catalogue.customer(session, customer_id))

    async def customer_history(self, operator: Operator, customer_id: str) -> list[CustomerChangeView]:
        operator.require(Action.read_orders)
        return await self.read(lambda session: catalogue.customer_history(session, customer_id))

    async def find_customers(
        self, operator: Operator, text: str | None, page: int = 1, page_size: int = 50
    ) -> CustomerPage:
        """A caller gives a name or an e-mail address: the customers it may be. Staff only: a
        storefront reads the customers it registers by id, it does not browse them all."""
        operator.require(Action.find_customers)
        return await self.read(lambda session: catalogue.find_customers(session, text, page, page_size))

    # --- operators and reads --------------------------------------------------------------------

    async def operator(self, operator_id: str) -> Operator:
        return await self.read(lambda session: queries.operator_by_id(session, operator_id))

    async def operator_by_token(self, token: str) -> Operator | None:
        return await self.read(lambda session: queries.operator_by_token(session, token))

    async def answer(self, call: Awaitable[T], what: str, then: str) -> T:
        """A workflow's answer, waited for at most `answer_timeout` seconds. Temporal keeps what it
        was handed while no worker runs; the caller is told so instead of waiting without end."""
        deadline = asyncio.timeout(self.answer_timeout)
        try:
            async with deadline:
                return await call
        except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
            if not deadline.expired():  # the caller was cancelled (Ctrl-C), which the SDK reports so
                raise asyncio.CancelledError from None
            raise Unavailable(
                f"{what} but got no answer within {self.answer_timeout:g} s, so no worker may be"
                f" running (docket worker, on task queue {self.task_queue}); {then}"
            ) from None

    async def read(self, query: Callable[[Session], T]) -> T:
        """Run a read against the store in a thread, so the event loop keeps serving."""

        def in_session() -> T:
            with read_session(self.sessions) as session:
                return query(session)

        return await asyncio.to_thread(in_session)

    async def look_up(self, query: Callable[[Tx], T]) -> T:
        """A read made of the write path's lookups (store.rows), on the driver's cursor, in a
        thread: what every command asks before it goes to a workflow."""

        def in_transaction() -> T:
            with reading(engine_of(self.sessions)) as tx:
                return query(tx)

        return await asyncio.to_thread(in_transaction)


def _move_name(update: Any, cmd: Any) -> str:
    if isinstance(cmd, MoveDelivery):
        return f"{cmd.trigger} of delivery {cmd.delivery_no}"
    return str(update.__name__).replace("_", " ")


def _require_same_order(cmd: PlaceOrder, placed: OrderView, lines: list[tuple[str, int, Decimal]]) -> None:
    """A repeated placement must be the order first placed under its id."""
    differ = [
        what
        for what, same in (
            ("shop", cmd.shop_id == placed.shop_id),
            ("customer", cmd.customer_id == placed.customer_id),
            ("payment flow", cmd.payment_flow in (None, placed.payment_flow)),
            ("currency", cmd.lines[0].currency == placed.currency),
            ("lines", [(line.sku, line.quantity, line.unit_price) for line in cmd.lines] == lines),
        )
        if not same
    ]
    if differ:
        raise InvalidInput(
            f"order id {cmd.order_id} is already taken by an order that differs in {', '.join(differ)}:"
            " an order id places one order; send the same order again, or give this one a new id"
        )


def _check_money(cmd: PlaceOrder) -> None:
    """An ISO 4217 currency docket can keep, and prices in its minor unit (no cents in yen).
    Checked here, at intake, not in `PlaceOrder` itself: a workflow decodes its `PlaceOrder`
    again on every replay, and an order accepted before must replay as it was."""
    try:
        check_currency(cmd.currency)
    except ValueError as refused:
        raise InvalidInput(f"currency: {refused}") from None
    places = decimal_places(cmd.currency)
    for n, line in enumerate(cmd.lines):
        if line.unit_price != line.unit_price.quantize(Decimal(1).scaleb(-places)):
            raise InvalidInput(
                f"lines.{n}.unit_price: {line.unit_price} {cmd.currency} is not a whole amount of its "
                f"minor unit ({places} decimal places)"
            )


SAME_REFERENCE = "the same change again (same reference) is safe: it answers with the result once applied"
ADDRESS_LINE = 200  # characters, as the first line of an address


def _check_country(cmd: PlaceOrder) -> None:
    """An address a parcel can carry: a country it can be sent to, and a second line no longer
    than the first may be. At intake, like the currency, so that accepted orders replay as they
    were."""
    address = cmd.shipping_address
    try:
        check_country(address.country)
    except ValueError as refused:
        raise InvalidInput(f"shipping_address.country: {refused}") from None
    if address.line2 is not None and len(address.line2) > ADDRESS_LINE:
        raise InvalidInput(
            f"shipping_address.line2: {len(address.line2)} characters; at most {ADDRESS_LINE}, as line1"
        )


def _check_catalogue(tx: Tx, cmd: PlaceOrder) -> None:
    shop = rows.shop_row(tx, cmd.shop_id)
    if shop is None:
        raise NotFound(f"unknown shop {cmd.shop_id}")
    if rows.customer_row(tx, cmd.customer_id) is None:
        raise NotFound(
            f"unknown customer {cmd.customer_id}: register them first "
            "(PUT /customers/{customer_id}, or `docket customer save`)"
        )
    known = {sku: rows.product_digital(tx, sku) for sku in sorted({line.sku for line in cmd.lines})}
    digital = {sku: is_digital for sku, is_digital in known.items() if is_digital is not None}
    if unknown := [sku for sku, is_digital in known.items() if is_digital is None]:
        raise NotFound(f"unknown SKU {', '.join(unknown)}")
    flow = cmd.payment_flow or shop.payment_flow
    if flow is PaymentFlow.per_shipment and any(digital.values()):
        # a digital delivery is released at once, with no shipment to capture its money at
        raise InvalidInput(
            f"payment flow per_shipment pays for parcels as they ship; digital products "
            f"({', '.join(sorted(s for s, d in digital.items() if d))}) need prepayment, on_delivery or offline"
        )
    card = flow in (PaymentFlow.prepayment, PaymentFlow.per_shipment) and shop.gateway != "offline"
    if card and not cmd.payment_token:
        raise InvalidInput(
            f"payment flow {flow.value} through {shop.gateway} needs the customer's payment_token from the gateway"
        )


STOCK_CHANGES = (StockMoveKind.receive, StockMoveKind.return_, StockMoveKind.adjust)


def _require_same_change(session: Session, cmd: ReceiveStock | AdjustStock) -> None:
    """A repeated stock change must be the change first recorded under its reference."""
    kind, delta = (
        (StockMoveKind.adjust, cmd.delta) if isinstance(cmd, AdjustStock) else (cmd.kind, cmd.quantity)
    )
    first = session.execute(
        select(StockMovement.kind, StockMovement.warehouse_id, StockMovement.sku, StockMovement.on_hand_delta)
        .where(StockMovement.reference == cmd.reference, StockMovement.kind.in_(STOCK_CHANGES))
        .order_by(StockMovement.movement_id)
        .limit(1)
    ).one()
    if tuple(first) != (kind, cmd.warehouse_id, cmd.sku, delta):
        raise InvalidInput(
            f"reference {cmd.reference} already recorded another stock change ({first.kind.value}"
            f" {first.on_hand_delta:+d} {first.sku} at {first.warehouse_id}): a reference records one"
            " change; give this one its own"
        )


def _require_known(session: Session, model: type[Any], key: str | None, what: str) -> None:
    """A filter naming what docket does not know is refused (404), never answered with an empty
    list: a mistyped id must not read as 'nothing there'."""
    if key and session.get(model, key) is None:
        raise NotFound(f"unknown {what} {key}")


def _require_warehouse(session: Session, operator: Operator, warehouse_id: str) -> None:
    if operator.all_shops:
        return
    shops = set(
        session.scalars(select(ShopWarehouse.shop_id).where(ShopWarehouse.warehouse_id == warehouse_id))
    )
    if not shops & operator.shops:
        raise Forbidden(f"operator {operator.operator_id} works for no shop served by {warehouse_id}")


def domain_error(failure: BaseException) -> BaseException:
    """The domain error at the root of a Temporal failure chain, or the failure itself."""
    cause: BaseException | None = failure
    while cause is not None:
        if isinstance(cause, ApplicationError) and cause.type:
            return from_kind(cause.type, cause.message)
        cause = cause.__cause__ or getattr(cause, "cause", None)
    return failure
