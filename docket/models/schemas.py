"""Every boundary's shape: commands in, results and views out (pydantic)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    computed_field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from docket.models.inputs import Input
from docket.models.lifecycles import DeliveryState, OrderState
from docket.models.payments import Operation, PaymentStatus, Result


def _says(message: str) -> WrapValidator:
    """A value that does not match a pattern is told what is allowed, not shown the regex."""

    def check(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as error:
            if any(e["type"] == "string_pattern_mismatch" for e in error.errors()):
                raise PydanticCustomError("string_pattern_mismatch", message) from None
            raise

    return WrapValidator(check)


IDENTIFIER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
Identifier = Annotated[
    str,
    StringConstraints(pattern=IDENTIFIER_PATTERN),
    _says("use 1 to 64 letters, digits and _ . : - (starting with a letter or digit)"),
]
Currency = Annotated[
    str, StringConstraints(pattern=r"^[A-Z]{3}$"), _says("write an ISO 4217 code in capitals, such as EUR")
]
Note = Annotated[str, StringConstraints(max_length=2000)]
# Mail goes to it: one @, something either side, no spaces. Whether the mailbox exists only the
# mail server can say (a refused address is recorded on the mail, and staff see it).
Email = Annotated[
    str,
    StringConstraints(pattern=r"^[^@\s]+@[^@\s]+$", max_length=320),
    _says("not an e-mail address: write it as name@example.com"),
]


class Command(Input):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PaymentFlow(StrEnum):
    prepayment = "prepayment"
    per_shipment = "per_shipment"
    on_delivery = "on_delivery"
    offline = "offline"


class DeliveryGroup(StrEnum):
    standard = "D1"
    preorder = "D2"
    backorder = "D3"
    digital = "D4"
    mixed = "D5"


class Address(Command):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    line1: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    line2: str | None = None
    city: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    postcode: Annotated[str, StringConstraints(min_length=1, max_length=20)]
    country: Annotated[
        str,
        StringConstraints(pattern=r"^[A-Z]{2}$"),
        _says("write an ISO 3166 country code in capitals, such as DE"),
    ]


class OrderLineIn(Command):
    sku: Identifier
    quantity: int = Field(gt=0, le=100_000, strict=True)
    unit_price: Decimal = Field(ge=0, max_digits=12, decimal_places=2)
    currency: Currency


class PlaceOrder(Command):
    """Place an order. `order_id` is the caller's idempotency key."""

    order_id: Identifier
    shop_id: Identifier
    customer_id: Identifier
    lines: list[OrderLineIn] = Field(min_length=1, max_length=200)
    shipping_address: Address
    payment_flow: PaymentFlow | None = None
    payment_token: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="The customer's token from the card gateway (online flows)"
    )
    single_parcel: bool | None = None
    operator_id: Identifier | None = None
    note: Note | None = None

    @model_validator(mode="after")
    def _one_currency(self) -> PlaceOrder:
        currencies = sorted({line.currency for line in self.lines})
        if len(currencies) > 1:
            raise ValueError(f"an order is paid in one currency; lines use {', '.join(currencies)}")
        return self

    @property
    def currency(self) -> str:
        return self.lines[0].currency


class OrderMoveBase(Command):
    order_id: Identifier
    operator_id: Identifier
    note: Note | None = None


class ConfirmPayment(OrderMoveBase):
    """A clerk confirms an offline payment (bank transfer, invoice, cash)."""


class CancelOrder(Command):
    """Cancel an order. No operator means docket itself (the payment deadline passed)."""

    order_id: Identifier
    operator_id: Identifier | None
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]


class ReturnOrder(OrderMoveBase):
    """Goods came back once on their way; restocking them is a separate stock movement."""


class RecordRefund(Command):
    """A clerk refunded the customer by hand (bank transfer, cash): the note says how."""

    order_id: Identifier
    operator_id: Identifier
    note: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    reference: Annotated[str, StringConstraints(max_length=200)] | None = None


class RetryRefund(Command):
    """Ask the gateway again for a refund it refused (otherwise retried on a timer)."""

    order_id: Identifier
    operator_id: Identifier


class MoveDelivery(OrderMoveBase):
    delivery_no: int = Field(ge=1, le=10_000)
    trigger: str

    @field_validator("trigger")
    @classmethod
    def _operator_trigger(cls, value: str) -> str:
        from docket.models.lifecycles import OPERATOR_DELIVERY_TRIGGERS

        if value not in OPERATOR_DELIVERY_TRIGGERS:
            raise ValueError(
                f"unknown delivery move {value!r}; one of {', '.join(OPERATOR_DELIVERY_TRIGGERS)}"
            )
        return value


class StockMoveKind(StrEnum):
    reserve = "reserve"
    release = "release"
    allocate = "allocate"
    deallocate = "deallocate"
    receive = "receive"
    return_ = "return"
    adjust = "adjust"


class ReceiveStock(Command):
    """Goods arrived at a warehouse. `reference` (delivery note, purchase order) makes it idempotent."""

    reference: Identifier
    warehouse_id: Identifier
    sku: Identifier
    quantity: int = Field(gt=0, le=10_000_000, strict=True)
    kind: StockMoveKind = StockMoveKind.receive
    order_id: Identifier | None = None
    operator_id: Identifier
    note: Note | None = None

    @model_validator(mode="after")
    def _returns_name_order(self) -> ReceiveStock:
        if self.kind not in (StockMoveKind.receive, StockMoveKind.return_):
            raise ValueError("kind is receive or return")
        if self.kind == StockMoveKind.return_ and (not self.order_id or not self.note):
            raise ValueError("a return to stock names the order and carries a note")
        return self


class AdjustStock(Command):
    """A stock count correction: `delta` units on hand, with the reason in `note`."""

    reference: Identifier
    warehouse_id: Identifier
    sku: Identifier
    delta: int = Field(strict=True, ge=-10_000_000, le=10_000_000)
    operator_id: Identifier
    note: Annotated[str, StringConstraints(min_length=1, max_length=2000)]

    @field_validator("delta")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("delta must not be 0")
        return value


# --- results and views -------------------------------------------------------------------------


class View(BaseModel):
    model_config = ConfigDict(frozen=True)


class CustomerDetails(Command):
    """What docket keeps of a customer: the name and address its mails use."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    email: Email


class CustomerView(View):
    customer_id: str
    name: str
    email: str


class Saved(StrEnum):
    """What saving a catalogue entry did."""

    created = "created"
    changed = "changed"
    unchanged = "unchanged"


class CustomerSaved(View):
    customer: CustomerView
    outcome: Saved


class CustomerChangeView(View):
    at: dt.datetime
    operator_id: str | None  # None: a catalogue file
    outcome: Saved
    name: str
    email: str


class CustomerPage(View):
    customers: list[CustomerView]
    page: int
    page_size: int
    total: int


class LineView(View):
    line_no: int
    sku: str
    quantity: int
    unit_price: Decimal
    currency: str
    reserved: int
    allocated: int


class DeliveryView(View):
    delivery_no: int
    group: DeliveryGroup
    warehouse_id: str | None
    state: DeliveryState
    release_at: dt.datetime | None
    lines: list[LineView]


class OrderView(View):
    order_id: str
    shop_id: str
    customer_id: str
    state: OrderState
    payment_flow: PaymentFlow
    currency: str
    total: Decimal
    placed_at: dt.datetime
    payment_deadline: dt.datetime | None
    return_until: dt.datetime | None
    rejection: str | None
    deliveries: list[DeliveryView]

    def delivery(self, delivery_no: int) -> DeliveryView | None:
        return next((d for d in self.deliveries if d.delivery_no == delivery_no), None)


class AuditEntry(View):
    at: dt.datetime
    operator_id: str | None
    entity: str
    trigger: str
    from_state: str | None
    to_state: str
    note: str | None


class StockMovementView(View):
    at: dt.datetime
    warehouse_id: str
    sku: str
    kind: StockMoveKind
    on_hand_delta: int
    reserved_delta: int
    order_id: str | None
    delivery_no: int | None
    note: str | None


class MailState(StrEnum):
    pending = "pending"
    # Handed to the move that wrote it, which sends it right after its commit: the background
    # delivery leaves it alone (it would send it a second time).
    sending = "sending"
    sent = "sent"
    failed = "failed"


class OutboxView(View):
    """One outbox row: one mail to one recipient, told by one move."""

    outbox_id: int
    order_id: str
    delivery_no: int | None
    recipient_kind: str
    recipient: str
    cc: str | None
    template_key: str
    state: MailState
    created_at: dt.datetime
    attempts: int
    sent_at: dt.datetime | None
    error: str | None


class MailPage(View):
    mails: list[OutboxView]
    page: int
    page_size: int
    total: int


class RenderedMail(View):
    """A mail as it is (or would be) sent: what `docket mail show` prints."""

    mail: OutboxView
    message_id: str
    subject: str | None
    text: str | None
    html: str | None
    render_error: str | None
    data: dict[str, Any]


class RetryMail(Command):
    """Send failed mails again: these rows, or every failed row of an order."""

    outbox_ids: list[Annotated[int, Field(gt=0)]] = []
    order_id: str | None = None

    @model_validator(mode="after")
    def _something(self) -> RetryMail:
        if not self.outbox_ids and not self.order_id:
            raise ValueError("name the mails to retry: outbox_ids, or order_id for an order's failed mails")
        return self


class MailRetried(View):
    retried: list[int]
    orders: list[str]


class PaymentView(View):
    transaction_id: int
    at: dt.datetime
    delivery_no: int | None
    gateway: str
    operation: Operation
    amount: Decimal
    currency: Currency
    result: Result
    settled: bool
    reference: str | None
    operator_id: str | None
    note: str | None


class PaymentSummary(View):
    """What the transactions add up to (refunds never exceed what was captured)."""

    status: PaymentStatus
    captured: Decimal
    refunded: Decimal
    currency: Currency


class CallbackView(View):
    """A stored gateway callback: when it came, and what processing it did."""

    callback_id: int
    gateway: str
    event_id: str
    shop_id: str
    order_id: str | None
    source: str | None
    received_at: dt.datetime
    processed_at: dt.datetime | None
    status: int | None
    outcome: str | None


class OrderRecord(View):
    """Everything about one order: what `docket order show` prints."""

    order: OrderView
    payment: PaymentSummary
    payments: list[PaymentView]
    history: list[AuditEntry]
    stock_movements: list[StockMovementView]
    notifications: list[OutboxView]


MAX_PAGE = 100_000  # pages beyond this are refused: an offset must fit the database's integers


class OrderPage(View):
    orders: list[OrderView]
    page: int
    page_size: int
    total: int


class QueuedDelivery(DeliveryView):
    """A delivery in a work list, with the order it belongs to."""

    order_id: str
    shop_id: str
    customer_id: str
    placed_at: dt.datetime


class DeliveryPage(View):
    """Deliveries oldest order first: the order they are worked through in."""

    deliveries: list[QueuedDelivery]
    page: int
    page_size: int
    total: int


class StockLevel(View):
    warehouse_id: str
    sku: str
    on_hand: int
    reserved: int
    backordered: int = Field(
        0,
        description="Units that waiting orders (back orders, pre-orders) still want beyond what is reserved",
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


class WokenDelivery(View):
    order_id: str
    delivery_no: int
    reserved: int  # units this change reserved for it
    short: int = 0  # units it still waits for (0: it is whole and goes ahead)


class StockReceived(View):
    reference: str
    level: StockLevel
    woken: list[WokenDelivery]  # deliveries made whole: their orders go ahead
    partly: list[WokenDelivery] = []  # deliveries that took some and still wait for the rest
    duplicate: bool = False


class LedgerProblem(View):
    where: str
    expected: str
    found: str


class LedgerReport(View):
    counters_checked: int
    movements_checked: int
    lines_checked: int
    problems: list[LedgerProblem]

    @property
    def ok(self) -> bool:
        return not self.problems
