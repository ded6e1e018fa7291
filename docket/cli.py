"""`docket ...`: the operator's and the developer's entry point."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import functools
import os
import re
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from docket import console as show
from docket.models.access import Operator
from docket.models.errors import DocketError, InvalidInput, Refused
from docket.models.inputs import problems
from docket.models.lifecycles import DeliveryState, OrderState
from docket.models.schemas import (
    MAX_PAGE,
    Address,
    AdjustStock,
    CancelOrder,
    ConfirmPayment,
    CustomerDetails,
    MailState,
    MoveDelivery,
    OrderLineIn,
    PaymentFlow,
    PlaceOrder,
    ReceiveStock,
    RecordRefund,
    RetryMail,
    RetryRefund,
    ReturnOrder,
)
from docket.runtime import Running, connected
from docket.settings import Settings, unknown_variables
from docket.store.queries import as_utc

# Help is plain text: no Rich markup is read in it, and a docstring's line breaks are only its
# source's wrapping (in "rich" mode Typer kept them in the command lists, mid-sentence).
GROUP: dict[str, Any] = {"no_args_is_help": True, "rich_markup_mode": "markdown"}


def _named(params: list[Any]) -> list[Any]:
    """Help names what to write, as Unix commands do: `--shop SHOP`, `ORDER_ID`, and a flag alone
    (`--json`). Typer printed the Python type instead (`<str>`, `{order_id}` in the usage line,
    `ORDER_ID <str>` in the list of arguments), and `<bool>` after a flag, as if it took a value."""
    for param in params:
        if param.metavar is None:
            param.metavar = "" if getattr(param, "is_flag", False) else (param.name or "").upper()
        if param.param_type_name == "argument":  # its name is in the first column; its help says the rest
            param.display_type_rich = _no_type
    return params


def _no_type(ctx: typer.Context) -> None:
    return None


class Command(TyperCommand):
    def get_params(self, ctx: typer.Context) -> list[Any]:  # type: ignore[override]
        return _named(super().get_params(ctx))


class Group(TyperGroup):
    def get_params(self, ctx: typer.Context) -> list[Any]:  # type: ignore[override]
        return _named(super().get_params(ctx))


class Commands(typer.Typer):
    """A group of `Command`s, itself a `Group`, unless they say otherwise."""

    def __init__(self, *args: Any, cls: type[TyperGroup] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, cls=cls or Group, **kwargs)

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or Command, **kwargs)


# A refusal names a move as the workflow and the API do (`allowed from here: mark_ready`); the
# CLI's command for it is shorter. Each is also taken by that name, written with _ or -.
MOVE_NAMES = {
    "confirm_payment": "confirm",
    "mark_ready": "ready",
    "return_goods": "return",
    "record_refund": "refund",
    "retry_refund": "refund-retry",
}


class OrderCommands(Group):
    """`docket order mark_ready D-1 1` is `docket order ready D-1 1` (not listed in the help)."""

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:  # type: ignore[override]
        named = MOVE_NAMES.get(cmd_name.replace("-", "_"), cmd_name)
        return super().get_command(ctx, cmd_name) or super().get_command(ctx, named)


app = Commands(help="docket: orders, deliveries and stock as durable workflows.", **GROUP)
order_app = Commands(help="Place, move and read orders.", cls=OrderCommands, **GROUP)
stock_app = Commands(help="Receive, adjust, read and verify stock.", **GROUP)
payment_app = Commands(help="Gateway callbacks: the inbox, and replaying it.", **GROUP)
mail_app = Commands(help="Mails sent for orders: list, read, send failed ones again.", **GROUP)
db_app = Commands(help="The database schema.", **GROUP)
catalogue_app = Commands(help="Shops, warehouses, products, customers, operators.", **GROUP)
customer_app = Commands(help="Register customers and read them.", **GROUP)
app.add_typer(order_app, name="order")
app.add_typer(customer_app, name="customer")
app.add_typer(stock_app, name="stock")
app.add_typer(mail_app, name="mail")
app.add_typer(payment_app, name="payment")
app.add_typer(db_app, name="db")
app.add_typer(catalogue_app, name="catalogue")

# What is printed holds what operators and customers typed (names, notes, addresses): no Rich
# markup or emoji codes are read in it ("[/x]" would fail the command, ":x:" become a cross).
out = Console(markup=False, emoji=False)
err = Console(stderr=True, markup=False, emoji=False)
T = TypeVar("T")

EXIT_UNAVAILABLE = 1  # Temporal cannot be reached, or the store is missing or not migrated
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report a process SIGINT ended
EXIT = {
    "InvalidInput": 2,
    "NotFound": 3,
    "Forbidden": 4,
    "Unauthenticated": 4,
    "StoreNotReady": EXIT_UNAVAILABLE,
    "Unavailable": EXIT_UNAVAILABLE,
}
EXIT_REFUSED = 5
EXIT_LEDGER_BROKEN = 6

AsOperator = Annotated[
    str | None,
    typer.Option("--as", envvar="DOCKET_OPERATOR", help="The operator acting (or DOCKET_OPERATOR)."),
]
NUMBER = re.compile(r"-\d+")


def whole(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """A parser of whole numbers (at least `low`, at most `high`) that says in docket's words what
    it was given and what it takes; Typer's own answer is pydantic's (`Input should be a valid
    integer, unable to parse string as an integer`)."""
    if low is None:
        allowed = ""
    elif high is None:
        allowed = f": give one of {low} or more"
    else:
        allowed = f": give one from {low} to {high}"

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not a whole number{allowed}") from None
        if (low is not None and number < low) or (high is not None and number > high):
            raise typer.BadParameter(f"{number} is out of range{allowed}")
        return number

    return parse


Page = Annotated[
    int, typer.Option(parser=whole(1, MAX_PAGE), metavar="N", help=f"Which page, from 1 to {MAX_PAGE:,}.")
]
PageSize = Annotated[
    int, typer.Option(parser=whole(1, 500), metavar="N", help="Rows to a page, from 1 to 500.")
]


class NumbersMayBeNegative(Command):
    """`docket stock adjust hamburg ATLAS -2`: a count below zero is an argument, not an unknown
    option. Any other unknown option is still refused by name (`--warehouse hamburg` must not be
    read as the warehouse `--warehouse` and the SKU `hamburg`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ignore_unknown_options = True  # "-2" reaches the arguments; checked below

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        options = [p for p in self.get_params(ctx) if p.param_type_name == "option"]
        takes_value = {name for p in options if not p.is_flag for name in p.opts}  # type: ignore[attr-defined]
        known = sorted({name for p in options for name in (*p.opts, *p.secondary_opts)})
        given = iter(args)
        for arg in given:
            if arg == "--":
                break
            if arg in takes_value:
                next(given, None)  # its value, whatever it looks like (`--note "-2 torn"`)
            elif arg.startswith("-") and arg.split("=", 1)[0] not in known and not NUMBER.fullmatch(arg):
                ctx.fail(
                    f"No such option: {arg.split('=', 1)[0]}. This command takes {', '.join(known)};"
                    f" the warehouse, SKU and count come first, as in {ctx.command_path} hamburg ATLAS 5"
                )
        return super().parse_args(ctx, args)


Note = Annotated[str | None, typer.Option("--note", help="Why, for the audit trail.")]
OrderId = Annotated[str, typer.Argument(help="The order's id.")]
DeliveryNo = Annotated[
    int, typer.Argument(parser=whole(1), help="The delivery's number in the order (order show lists them).")
]
CustomerId = Annotated[str, typer.Argument(help="The customer's id.")]
Warehouse = Annotated[str, typer.Argument(help="The warehouse's id.")]
Sku = Annotated[str, typer.Argument(help="The product's SKU.")]


def main() -> None:
    app()


def settings() -> Settings:
    try:
        loaded = Settings()
    except ValidationError as error:  # named as they are set: DOCKET_WORKFLOW_CACHE, not workflow_cache
        named = [{**e, "loc": (f"DOCKET_{'_'.join(map(str, e['loc'])).upper()}",)} for e in error.errors()]
        fail(f"bad settings: {problems(named)}", 2)
        raise  # unreachable
    _tell_of_unknown_variables()
    return loaded


@functools.cache  # once per process
def _tell_of_unknown_variables() -> None:
    for said in unknown_variables(os.environ):
        err.print(Text.assemble(("warning:", "yellow"), f" {said}"), highlight=False)


def fail(message: str, code: int) -> None:
    err.print(Text.assemble(("error:", "red"), f" {message}"), highlight=False)
    raise typer.Exit(code)


def read_text(path: Path) -> str:
    """A file an operator names (`-`: standard input), or exit 2 saying why it cannot be read."""
    try:
        return sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text", 2)
    except OSError as error:
        fail(f"cannot read {path}: {error.strerror or error}", 2)
    raise AssertionError("unreachable")


def _validation_text(error: ValidationError) -> str:
    return problems(error.errors())


def stop_on_sigterm() -> None:
    """SIGTERM (how systemd, Kubernetes and the like stop a process) cancels the running command
    as Ctrl-C does: the worker stops polling and reports the activities it holds, then exits. Set
    on the event loop, so it holds also where Ctrl-C is ignored (a process started with `&`)."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


def run(
    job: Callable[[Running], Awaitable[T]], *, migrate: bool = False, lazy: bool = True, serve: bool = False
) -> T:
    """Run one command against the store and Temporal; domain errors become one red line. The
    Temporal client connects on its first call (`lazy`), so reading the store needs no Temporal;
    a worker needs a connected one. A command that `serve`s runs until Ctrl-C or SIGTERM."""

    async def go() -> T:
        if serve:
            stop_on_sigterm()
        async with connected(settings(), migrate=migrate, lazy=lazy) as running:
            return await job(running)

    try:
        return asyncio.run(go())
    except ValidationError as error:
        fail(_validation_text(error), 2)
    except DocketError as error:
        fail(str(error), EXIT.get(error.kind, EXIT_REFUSED))
    except RuntimeError as error:
        if "connect" in str(error).lower():
            fail(f"cannot reach Temporal at {settings().temporal_address}: {error}", EXIT_UNAVAILABLE)
        raise
    except KeyboardInterrupt:
        if serve:
            raise
        fail(
            "interrupted before the answer came: what was already sent may still be carried out"
            " (docket order show, docket stock show tell)",
            EXIT_INTERRUPTED,
        )
    raise AssertionError("unreachable")


async def acting(running: Running, operator_id: str | None) -> Operator:
    if not operator_id:
        raise InvalidInput("say who is acting: --as OPERATOR or DOCKET_OPERATOR")
    return await running.docket.operator(operator_id)


# --- orders -----------------------------------------------------------------------------------


def parse_line(text: str, currency: str) -> OrderLineIn:
    try:
        sku, quantity, price = text.rsplit(":", 2)  # a SKU may itself hold a colon
        count, unit_price = int(quantity), Decimal(price)
    except (ValueError, InvalidOperation):
        raise InvalidInput(f"--line {text!r}: write SKU:QUANTITY:UNIT_PRICE, e.g. WIDGET:2:19.90") from None
    try:
        return OrderLineIn(sku=sku, quantity=count, unit_price=unit_price, currency=currency)
    except ValidationError as error:  # well formed, but a value out of range: say which and why
        raise InvalidInput(f"--line {text!r}: {_validation_text(error)}") from None


def parse_address(text: str) -> Address:
    parts = [p.strip() for p in text.split("|")]
    if len(parts) != 5:
        raise InvalidInput(
            f"--ship-to {text!r}: write 'Name|Street|City|Postcode|CC', e.g. 'Ada|1 Main St|Berlin|10115|DE'"
        )
    name, line1, city, postcode, country = parts
    return Address(name=name, line1=line1, city=city, postcode=postcode, country=country)


@order_app.command("place")
def order_place(
    shop: Annotated[str | None, typer.Option(help="Shop the order is placed in.")] = None,
    customer: Annotated[str | None, typer.Option(help="Customer id.")] = None,
    line: Annotated[
        list[str] | None,
        typer.Option(
            metavar="SKU:QTY:PRICE",
            help="A line: SKU, quantity and unit price joined by colons, as in ATLAS:2:39.90. Repeatable.",
        ),
    ] = None,
    currency: Annotated[str, typer.Option(help="Currency of every line.")] = "EUR",
    ship_to: Annotated[
        str | None,
        typer.Option(
            metavar="ADDRESS",
            help="Name, street, city, postcode and country code joined by |, as in 'Ada | 1 Main St | Berlin | 10115 | DE'.",
        ),
    ] = None,
    payment_flow: Annotated[
        PaymentFlow | None, one_of(PaymentFlow, "a payment flow", "FLOW", "; default: the shop's")
    ] = None,
    payment_token: Annotated[
        str | None,
        typer.Option(help="The card's token from the shop's gateway (its payment form or terminal)."),
    ] = None,
    single_parcel: Annotated[
        bool | None, typer.Option(help="Ship everything physical in one parcel.")
    ] = None,
    order_id: Annotated[
        str | None,
        typer.Option(
            help="Idempotency key; made up if not given, and printed first: give it to repeat safely."
        ),
    ] = None,
    from_json: Annotated[
        Path | None, typer.Option("--json", metavar="FILE", help="A PlaceOrder JSON file ('-': stdin).")
    ] = None,
    operator: AsOperator = None,
) -> None:
    """Place an order. Placing the same --order-id again answers with the first result."""
    given = [
        name
        for name, value in (
            ("--shop", shop),
            ("--customer", customer),
            ("--line", line),
            ("--ship-to", ship_to),
            ("--order-id", order_id),
            ("--payment-flow", payment_flow),
            ("--payment-token", payment_token),
            ("--single-parcel", single_parcel),
        )
        if value is not None
    ]
    if from_json is not None and given:
        fail(f"--json gives the whole order: leave out {', '.join(given)}", 2)
    text = read_text(from_json) if from_json is not None else None

    async def job(running: Running) -> None:
        if text is not None:
            cmd = PlaceOrder.model_validate_json(text)
        else:
            if not (shop and customer and line and ship_to):
                raise InvalidInput(
                    "give --shop, --customer, at least one --line and --ship-to (or --json FILE)"
                )
            key = order_id or f"o-{uuid.uuid4().hex[:12]}"
            if order_id is None:  # said before anything is sent: a run cut short can be repeated safely
                err.print(f"order id {key} (to repeat this command safely: --order-id {key})")
            cmd = PlaceOrder(
                order_id=key,
                shop_id=shop,
                customer_id=customer,
                lines=[parse_line(text, currency) for text in line],
                shipping_address=parse_address(ship_to),
                payment_flow=payment_flow,
                payment_token=payment_token,
                single_parcel=single_parcel,
            )
        view = await running.docket.place_order(await acting(running, operator), cmd)
        out.print(show.order_summary(view))

    run(job)


@order_app.command("show")
def order_show(
    order_id: OrderId,
    operator: AsOperator = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="The record as JSON, as GET /orders/{id} answers it.")
    ] = False,
) -> None:
    """The order, its deliveries, stock movements, notifications and whole history."""

    async def job(running: Running) -> None:
        record = await running.docket.order_record(await acting(running, operator), order_id)
        out.print_json(record.model_dump_json()) if as_json else out.print(show.order_record(record))

    run(job)


E = TypeVar("E", bound=enum.Enum)


def one_of(kind: type[E], what: str, metavar: str, then: str = "") -> Any:
    """An option naming one of `kind`'s values, listed in its help as words (Typer's own list of
    choices is one token, split mid-word on 80 columns); others are refused in docket's words."""
    values = ", ".join(str(k.value) for k in kind)

    def parse(value: str) -> E:
        try:
            return kind(value)
        except ValueError:
            raise typer.BadParameter(f"{value!r} is not {what}: give one of {values}") from None

    return typer.Option(parser=parse, metavar=metavar, help=f"One of: {values}{then}.")


def moment(value: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not a date or time: give an ISO date or time, such as 2026-11-24 or "
            "2026-11-24T09:30 (UTC unless it carries an offset, such as 2026-11-24T09:30+01:00)"
        ) from None


@order_app.command("list")
def order_list(
    shop: Annotated[str | None, typer.Option(help="Only this shop's orders.")] = None,
    state: Annotated[OrderState | None, one_of(OrderState, "an order state", "STATE")] = None,
    customer: Annotated[str | None, typer.Option(help="Only this customer's orders.")] = None,
    since: Annotated[
        dt.datetime | None,
        typer.Option(
            parser=moment,
            metavar="DATE",
            help="Placed at or after: an ISO date or time (UTC unless it has an offset).",
        ),
    ] = None,
    until: Annotated[
        dt.datetime | None, typer.Option(parser=moment, metavar="DATE", help="Placed before.")
    ] = None,
    page: Page = 1,
    page_size: PageSize = 50,
    operator: AsOperator = None,
) -> None:
    """Orders newest first, filtered and paged; only the shops the operator works for."""

    async def job(running: Running) -> None:
        result = await running.docket.list_orders(
            await acting(running, operator),
            shop_id=shop,
            state=state,
            customer_id=customer,
            placed_from=as_utc(since),
            placed_until=as_utc(until),
            page=page,
            page_size=page_size,
        )
        out.print(show.order_page(result))

    run(job)


@order_app.command("deliveries")
def order_deliveries(
    warehouse: Annotated[str | None, typer.Option(help="Only this warehouse's deliveries.")] = None,
    state: Annotated[
        DeliveryState | None,
        one_of(
            DeliveryState,
            "a delivery state",
            "STATE",
            " (allocated: to pack; ready: to ship); without it, every delivery not yet ended",
        ),
    ] = None,
    shop: Annotated[str | None, typer.Option(help="Only this shop's deliveries.")] = None,
    page: Page = 1,
    page_size: PageSize = 50,
    operator: AsOperator = None,
) -> None:
    """Deliveries oldest order first, to work through: docket order deliveries --warehouse hamburg
    --state allocated lists what to pack there next."""

    async def job(running: Running) -> None:
        found = await running.docket.list_deliveries(
            await acting(running, operator),
            shop_id=shop,
            warehouse_id=warehouse,
            state=state,
            page=page,
            page_size=page_size,
        )
        out.print(show.delivery_page(found))

    run(job)


@order_app.command("confirm")
def order_confirm(order_id: OrderId, operator: AsOperator = None, note: Note = None) -> None:
    """Confirm an offline payment (bank transfer, invoice, cash)."""

    async def job(running: Running) -> None:
        who = await acting(running, operator)
        cmd = ConfirmPayment(order_id=order_id, operator_id=who.operator_id, note=note)
        out.print(show.order_summary(await running.docket.confirm_payment(who, cmd)))

    run(job)


def _delivery_command(trigger: str, doc: str) -> None:
    def command(
        order_id: OrderId, delivery_no: DeliveryNo, operator: AsOperator = None, note: Note = None
    ) -> None:
        async def job(running: Running) -> None:
            who = await acting(running, operator)
            cmd = MoveDelivery(
                order_id=order_id,
                operator_id=who.operator_id,
                delivery_no=delivery_no,
                trigger=trigger,
                note=note,
            )
            view = await running.docket.move_delivery(who, cmd)
            out.print(show.order_summary(view))
            delivery = view.delivery(delivery_no)
            if trigger == "ship" and delivery and delivery.state is DeliveryState.ready_waiting_payment:
                record = await running.docket.order_record(who, order_id)
                raise Refused(show.why_held(record, delivery_no))  # printed, exit 5: not shipped

        run(job)

    command.__doc__ = doc
    order_app.command(trigger.replace("mark_", ""))(command)


_delivery_command("pack", "Start packing an allocated delivery.")
_delivery_command("mark_ready", "A packed delivery is ready for dispatch.")
_delivery_command("ship", "Hand a ready delivery to the carrier.")
_delivery_command("deliver", "The carrier delivered it: the delivery is shipped.")


@order_app.command("cancel")
def order_cancel(
    order_id: OrderId,
    reason: Annotated[str, typer.Option(help="Why (kept in the history).")],
    operator: AsOperator = None,
) -> None:
    """Cancel: reservations released, allocated stock credited back. Refused once goods are on their way."""

    async def job(running: Running) -> None:
        who = await acting(running, operator)
        cmd = CancelOrder(order_id=order_id, operator_id=who.operator_id, reason=reason)
        out.print(show.order_summary(await running.docket.cancel_order(who, cmd)))

    run(job)


@order_app.command("return")
def order_return(order_id: OrderId, operator: AsOperator = None, note: Note = None) -> None:
    """The whole order comes back: deliveries on their way or delivered are returned (brought back
    by the carrier, or sent back), those not yet on their way are withdrawn, and what was paid is
    refunded. Putting goods back on the shelf is `docket stock return`."""

    async def job(running: Running) -> None:
        who = await acting(running, operator)
        cmd = ReturnOrder(order_id=order_id, operator_id=who.operator_id, note=note)
        out.print(show.order_summary(await running.docket.return_order(who, cmd)))

    run(job)


@order_app.command("refund")
def order_refund(
    order_id: OrderId,
    note: Annotated[str, typer.Option("--note", help="How the money went back (required).")],
    reference: Annotated[str | None, typer.Option(help="Bank or till reference.")] = None,
    operator: AsOperator = None,
) -> None:
    """Record a refund made by hand for a cancelled or returned order that waits for one."""

    async def job(running: Running) -> None:
        who = await acting(running, operator)
        cmd = RecordRefund(order_id=order_id, operator_id=who.operator_id, note=note, reference=reference)
        out.print(show.order_summary(await running.docket.record_refund(who, cmd)))

    run(job)


@order_app.command("refund-retry")
def order_refund_retry(order_id: OrderId, operator: AsOperator = None) -> None:
    """Ask the gateway again for a refund it refused (it is also retried on a timer)."""

    async def job(running: Running) -> None:
        who = await acting(running, operator)
        view = await running.docket.retry_refund(
            who, RetryRefund(order_id=order_id, operator_id=who.operator_id)
        )
        out.print(show.order_summary(view))

    run(job)


# --- stock ------------------------------------------------------------------------------------

Reference = Annotated[
    str, typer.Option("--ref", help="Delivery note or count sheet: a repeat with it is a no-op.")
]


@stock_app.command("receive", cls=NumbersMayBeNegative)
def stock_receive(
    warehouse: Warehouse,
    sku: Sku,
    quantity: Annotated[int, typer.Argument(parser=whole(), help="Units received.")],
    reference: Reference,
    operator: AsOperator = None,
    note: Note = None,
) -> None:
    """Goods arrived: on hand goes up and the oldest waiting back orders take them at once."""

    async def job(running: Running) -> None:
        who = await acting(running, operator)
        cmd = ReceiveStock(
            reference=reference,
            warehouse_id=warehouse,
            sku=sku,
            quantity=quantity,
            operator_id=who.operator_id,
            note=note,
        )
        out.print(show.stock_received(await running.docket.change_stock(who, cmd)))

    run(job)


@stock_app.command("return", cls=NumbersMayBeNegative)
def stock_return(
    warehouse: Warehouse,
    sku: Sku,
    quantity: Annotated[int, typer.Argument(parser=whole(), help="Units put back on the shelf.")],
    reference: Reference,
    order: Annotated[str, typer.Option(help="The order the goods came back from.")],
    note: Annotated[str, typer.Option(help="Condition of the goods, who checked them.")],
    operator: AsOperator = None,
) -> None:
    """Put returned goods back on the shelf (a stock movement of its own, with a note)."""

    async def job(running: Running) -> None:
        who = await acting(running, operator)
        cmd = ReceiveStock(
            reference=reference,
            warehouse_id=warehouse,
            sku=sku,
            quantity=quantity,
            kind="return",
            order_id=order,
            operator_id=who.operator_id,
            note=note,
        )
        out.print(show.stock_received(await running.docket.change_stock(who, cmd)))

    run(job)


@stock_app.command("adjust", cls=NumbersMayBeNegative)
def stock_adjust(
    warehouse: Warehouse,
    sku: Sku,
    delta: Annotated[int, typer.Argument(parser=whole(), help="Units to add (negative: remove).")],
    reference: Reference,
    note: Annotated[str, typer.Option(help="Why the count changed.")],
    operator: AsOperator = None,
) -> None:
    """Correct a count. Never below what is reserved for orders."""

    async def job(running: Running) -> None:
        who = await acting(running, operator)
        cmd = AdjustStock(
            reference=reference,
            warehouse_id=warehouse,
            sku=sku,
            delta=delta,
            operator_id=who.operator_id,
            note=note,
        )
        out.print(show.stock_received(await running.docket.change_stock(who, cmd)))

    run(job)


@stock_app.command("show")
def stock_show(
    warehouse: Annotated[str | None, typer.Option(help="Only this warehouse.")] = None,
    sku: Annotated[str | None, typer.Option(help="Only this SKU.")] = None,
    operator: AsOperator = None,
) -> None:
    """On hand, reserved, available, and back-ordered: what waiting orders still want beyond what is
    reserved for them (receipts go to them first, oldest order first)."""

    async def job(running: Running) -> None:
        out.print(
            show.stock_levels(
                await running.docket.stock_levels(await acting(running, operator), warehouse, sku)
            )
        )

    run(job)


@stock_app.command("verify")
def stock_verify(operator: AsOperator = None) -> None:
    """Prove the counters equal the ledger, nothing was ever reserved beyond what was there, and
    each order line holds what its movements and its delivery's state say. Exits 6, listing the
    offending rows, when not."""

    async def job(running: Running) -> bool:
        report = await running.docket.verify_stock(await acting(running, operator))
        out.print(show.ledger_report(report))
        return report.ok

    if not run(job):
        raise typer.Exit(EXIT_LEDGER_BROKEN)


# --- mail -------------------------------------------------------------------------------------


@mail_app.command("list")
def mail_list(
    order: Annotated[str | None, typer.Option(help="Only this order's mails.")] = None,
    shop: Annotated[str | None, typer.Option(help="Only this shop's mails.")] = None,
    state: Annotated[MailState | None, one_of(MailState, "a mail state", "STATE")] = None,
    recipient: Annotated[str | None, typer.Option(help="An e-mail address.")] = None,
    page: Page = 1,
    page_size: PageSize = 50,
    operator: AsOperator = None,
) -> None:
    """Mails newest first: to whom, which template, whether sent, and why not."""

    async def job(running: Running) -> None:
        found = await running.docket.list_mail(
            await acting(running, operator),
            shop_id=shop,
            order_id=order,
            state=state,
            recipient=recipient,
            page=page,
            page_size=page_size,
        )
        out.print(show.mail_page(found))

    run(job)


@mail_app.command("show")
def mail_show(
    outbox_id: Annotated[int, typer.Argument(parser=whole(1), help="The mail's id (see docket mail list).")],
    html: Annotated[bool, typer.Option("--html", help="Print the HTML part instead of the text.")] = False,
    operator: AsOperator = None,
) -> None:
    """One mail: its delivery record and how it reads."""

    async def job(running: Running) -> None:
        rendered = await running.docket.show_mail(await acting(running, operator), outbox_id)
        if html:
            out.print(rendered.html or rendered.render_error, highlight=False, markup=False)
        else:
            out.print(show.rendered_mail(rendered))

    run(job)


@mail_app.command("retry")
def mail_retry(
    outbox_ids: Annotated[
        list[int] | None, typer.Argument(parser=whole(1), help="Mail ids (see docket mail list).")
    ] = None,
    order: Annotated[str | None, typer.Option(help="Every failed mail of this order.")] = None,
    operator: AsOperator = None,
) -> None:
    """Send failed mails again (after fixing an address or a template)."""

    if not outbox_ids and not order:
        fail(
            "name the mails to retry: their ids (docket mail list), or --order ID for an order's failed ones",
            2,
        )

    async def job(running: Running) -> None:
        cmd = RetryMail(outbox_ids=outbox_ids or [], order_id=order)
        out.print(show.mail_retried(await running.docket.retry_mail(await acting(running, operator), cmd)))

    run(job)


# --- customers --------------------------------------------------------------------------------


@customer_app.command("save")
def customer_save(
    customer_id: CustomerId,
    name: Annotated[str, typer.Option(help="As the mails address them.")],
    email: Annotated[str, typer.Option(help="Where the order mails go.")],
    operator: AsOperator = None,
) -> None:
    """Register a customer, or change their name and e-mail address (the same again changes nothing)."""

    async def job(running: Running) -> None:
        who = await acting(running, operator)
        saved = await running.docket.save_customer(who, customer_id, CustomerDetails(name=name, email=email))
        out.print(show.customer(saved.customer, saved.outcome))

    run(job)


@customer_app.command("show")
def customer_show(customer_id: CustomerId, operator: AsOperator = None) -> None:
    """A customer's name, the address docket's mails go to, who registered and changed them, and
    their latest orders in the shops the operator works for (all: `order list --customer`)."""

    async def job(running: Running) -> None:
        who = await acting(running, operator)
        out.print(show.customer(await running.docket.customer(who, customer_id)))
        out.print(show.customer_history(await running.docket.customer_history(who, customer_id)))
        out.print(
            show.order_page(await running.docket.list_orders(who, customer_id=customer_id, page_size=10))
        )

    run(job)


@customer_app.command("find")
def customer_find(
    text: Annotated[
        str | None, typer.Argument(help="Part of the id, name or e-mail address, any case.")
    ] = None,
    page: Page = 1,
    page_size: PageSize = 50,
    operator: AsOperator = None,
) -> None:
    """Customers by name whose id, name or e-mail address holds TEXT; every customer without it."""

    async def job(running: Running) -> None:
        who = await acting(running, operator)
        out.print(show.customer_page(await running.docket.find_customers(who, text, page, page_size)))

    run(job)


# --- payments ---------------------------------------------------------------------------------


@payment_app.command("inbox")
def payment_inbox(
    every: Annotated[
        bool, typer.Option("--all", help="Every stored callback, not only unprocessed ones.")
    ] = False,
    replay: Annotated[bool, typer.Option("--replay", help="Process the unprocessed ones now.")] = False,
    operator: AsOperator = None,
) -> None:
    """Gateway callbacks stored but not processed yet (a crash between storing and processing)."""
    from docket.callbacks import Callbacks

    async def job(running: Running) -> None:
        who = await acting(running, operator)
        callbacks = Callbacks(running.docket, running.gateways)
        found = await (callbacks.replay(who) if replay else callbacks.inbox(who, every=every))
        out.print(show.callbacks(found))

    run(job)


# The set-up and process commands live in cli_setup; importing it registers them on `app`.
from docket import cli_setup  # noqa: E402, F401

if __name__ == "__main__":
    # Run the imported module, where cli_setup registered its commands, not this __main__ copy.
    from docket.cli import main as run_main

    run_main()
