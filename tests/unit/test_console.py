"""What the CLI prints, rendered as an 80-column terminal shows it."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

from rich.console import Console, RenderableType

from docket import console as show
from docket.models.lifecycles import DeliveryState, OrderState
from docket.models.payments import Operation, PaymentStatus, Result
from docket.models.schemas import (
    AuditEntry,
    CallbackView,
    DeliveryGroup,
    DeliveryView,
    LineView,
    MailPage,
    MailState,
    OrderPage,
    OrderRecord,
    OrderView,
    OutboxView,
    PaymentFlow,
    PaymentSummary,
    PaymentView,
    StockLevel,
    StockMoveKind,
    StockMovementView,
    StockReceived,
    WokenDelivery,
)

AT = dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC)


def printed(*renderables: RenderableType, width: int = 80) -> str:
    """What a terminal `width` columns wide shows, each renderable printed after the other."""
    terminal = Console(width=width, record=True, color_system=None)
    for renderable in renderables:
        terminal.print(renderable)
    return terminal.export_text()


def mail(outbox_id: int, state: MailState, error: str | None = None) -> OutboxView:
    return OutboxView(
        outbox_id=outbox_id,
        order_id="D-001",
        delivery_no=None,
        recipient_kind="customer",
        recipient="grace@example.test",
        cc=None,
        template_key="order_received",
        state=state,
        created_at=AT,
        attempts=1 if state is MailState.sent else 3,
        sent_at=AT if state is MailState.sent else None,
        error=error,
    )


def on_80_columns(page: MailPage) -> tuple[str, str]:
    """The table's header and its body, as printed on 80 columns."""
    header, _, body = printed(show.mail_page(page)).partition("┡")
    return header, body


def test_a_mail_page_shows_an_error_column_only_when_a_mail_failed() -> None:
    sent = MailPage(mails=[mail(1, MailState.sent)], page=1, page_size=50, total=1)
    header, body = on_80_columns(sent)
    assert "state" in header and "error" not in header
    assert re.search(r"│ 1 +│ D-001 +│ grace@example\.test \(customer\) +│ sent, 1 try +│", body)
    assert re.search(r"│ +│ +│ order_received +│ 2026-11-24 09:30 │", body)  # the template; when it went

    failed = mail(2, MailState.failed, "550 5.1.1 no such mailbox")
    header, body = on_80_columns(
        sent.model_copy(update={"mails": [failed, mail(1, MailState.sent)], "total": 2})
    )
    assert "error" in header and "550" in body and "failed, 3 tries" in body


def a_returned_order() -> OrderRecord:
    """An order of two deliveries from one warehouse: shipped, returned, and one unit back on
    the shelf, paid offline the day before it shipped."""
    day_before = AT - dt.timedelta(days=1)
    line = LineView(
        line_no=1,
        sku="ATLAS",
        quantity=2,
        unit_price=Decimal("39.90"),
        currency="EUR",
        reserved=0,
        allocated=2,
    )
    delivery = DeliveryView(
        delivery_no=1,
        group=DeliveryGroup.standard,
        warehouse_id="hamburg",
        state=DeliveryState.returned,
        release_at=None,
        lines=[line],
    )
    order = OrderView(
        order_id="D-001",
        shop_id="harbour",
        customer_id="grace",
        state=OrderState.returned_waiting_payment,
        payment_flow=PaymentFlow.offline,
        currency="EUR",
        total=Decimal("79.80"),
        placed_at=day_before,
        payment_deadline=None,
        return_until=None,
        rejection=None,
        deliveries=[delivery, delivery.model_copy(update={"delivery_no": 2})],
    )

    def moved(kind: StockMoveKind, on_hand: int, reserved: int, delivery_no: int | None) -> StockMovementView:
        return StockMovementView(
            at=AT,
            warehouse_id="hamburg",
            sku="SAGA-3" if delivery_no == 2 else "ATLAS",
            kind=kind,
            on_hand_delta=on_hand,
            reserved_delta=reserved,
            order_id="D-001",
            delivery_no=delivery_no,
            note="unopened" if delivery_no is None else None,
        )

    return OrderRecord(
        order=order,
        payment=PaymentSummary(
            status=PaymentStatus.full, captured=Decimal("79.80"), refunded=Decimal("0.00"), currency="EUR"
        ),
        payments=[
            PaymentView(
                transaction_id=1,
                at=day_before,
                delivery_no=None,
                gateway="offline",
                operation=Operation.capture,
                amount=Decimal("79.80"),
                currency="EUR",
                result=Result.ok,
                settled=True,
                reference=None,
                operator_id="hanna",
                note="bank transfer seen",
            )
        ],
        history=[
            AuditEntry(
                at=day_before,
                operator_id="hanna",
                entity="order",
                trigger="confirm_payment",
                from_state="waiting_confirmation",
                to_state="in_progress",
                note="bank transfer seen",
            )
        ],
        stock_movements=[
            moved(StockMoveKind.return_, 1, 0, None),
            moved(StockMoveKind.reserve, 0, 2, 1),
            moved(StockMoveKind.reserve, 0, 1, 2),
            moved(StockMoveKind.allocate, -2, -2, 1),
        ],
        notifications=[mail(1, MailState.sent)],
    )


def test_an_order_on_80_columns_keeps_its_dates_identifiers_and_amounts_whole() -> None:
    text = printed(show.order_record(a_returned_order()))
    assert "2026-11-23 09:30" in text  # the payment's day, not only its time
    assert re.search(r"2026-11-23 09:30 +│ offline +│ capture +│ +79\.80 +│", text)
    lines = text.splitlines()
    at = {
        name: next(n for n, line in enumerate(lines) if name in line) for name in ("delivery 1", "delivery 2")
    }
    at["shelf"] = next(n for n, line in enumerate(lines) if line.startswith("│ returns "))
    assert at["delivery 1"] < at["delivery 2"] < at["shelf"]  # by delivery; returns last
    assert re.search(r"hamburg/ATLAS +│ reserve +│ +\+0 +│ +\+2 +│", lines[at["delivery 1"] + 1])
    assert re.search(r"hamburg/ATLAS +│ allocate +│ +-2 +│ +-2 +│", lines[at["delivery 1"] + 2])
    assert re.search(r"hamburg/SAGA-3 +│ reserve +│", lines[at["delivery 2"] + 1])
    assert re.search(r"hamburg/ATLAS +│ return +│ +\+1 +│ +\+0 +│ unopened", lines[at["shelf"] + 1])
    assert "grace@example.test (customer)" in text and "order_received" in text
    assert "error" not in text  # no mail failed: no error column


def test_an_order_with_no_payment_or_stock_yet_says_so_instead_of_printing_empty_tables() -> None:
    record = a_returned_order()
    unpaid = record.model_copy(
        update={
            "payment": record.payment.model_copy(update={"status": PaymentStatus.none}),
            "payments": [],
            "stock_movements": [],
        }
    )
    text = printed(show.order_record(unpaid))
    assert "payment: none · no payment recorded\n" in text
    assert "stock movements: none\n" in text
    assert "operation" not in text and "on hand" not in text  # no headers over nothing


def test_amounts_are_written_with_their_currencys_places() -> None:
    record = a_returned_order()
    yen = Decimal("3980.00")  # as the store keeps it: two places, whatever the currency
    record = record.model_copy(
        update={
            "order": record.order.model_copy(update={"currency": "JPY", "total": yen}),
            "payment": record.payment.model_copy(update={"currency": "JPY", "captured": yen}),
            "payments": [record.payments[0].model_copy(update={"currency": "JPY", "amount": yen})],
        }
    )
    text = printed(
        show.order_record(record),
        show.order_page(OrderPage(orders=[record.order], page=1, page_size=50, total=1)),
    )
    assert "grace · 3980 JPY ·" in text
    assert "payment: full · captured 3980 · refunded 0 JPY" in text
    assert re.search(r"│ offline +│ capture +│ +3980 +│", text)
    assert re.search(r"│ 3980 JPY │", text)  # the order list's total
    assert "3980.00" not in text


def test_an_order_list_keeps_states_and_totals_whole_and_shows_deliveries_where_there_is_room() -> None:
    order = a_returned_order().order.model_copy(update={"state": OrderState.partially_shipped})
    page = OrderPage(orders=[order], page=1, page_size=50, total=1)

    narrow = printed(show.order_page(page))
    assert re.search(r"│ D-001 +│ 2026-11-23 09:30 +│ partially_shipped +│ 79\.80 EUR │", narrow)
    # the shop under the order id, the customer under the time
    assert re.search(r"│ harbour +│ grace +│", narrow)
    assert "deliveries" not in narrow  # left to `order show`
    wide = printed(show.order_page(page), width=120)
    assert re.search(r"│ D-001 +│ harbour +│ grace +│ .* │ D1:returned D1:returned +│", wide)


def test_an_order_list_on_80_columns_keeps_its_headers_whole_beside_the_longest_state() -> None:
    order = a_returned_order().order.model_copy(
        update={"state": OrderState.cancelled_waiting_payment, "customer_id": "grace-hopper-1906"}
    )
    header, _, body = printed(
        show.order_page(OrderPage(orders=[order], page=1, page_size=50, total=1))
    ).partition("┡")
    assert re.search(r"┃ order +┃ placed, customer +┃ state +┃ +total ┃", header)
    assert re.search(r"│ D-001 +│ 2026-11-23 09:30 +│ cancelled_waiting_payment │ 79\.80 EUR │", body)
    assert re.search(r"│ harbour +│ grace-hopper-1906 │", body)  # the customer under the time


def test_a_held_parcel_says_why_and_what_to_do() -> None:
    record = a_returned_order()
    capture = record.payments[0].model_copy(
        update={"delivery_no": 1, "result": Result.processing, "note": None}
    )
    held = record.model_copy(update={"payments": [capture]})
    assert show.why_held(held, 1) == (
        "delivery 1 of order D-001 is held, not shipped: the gateway is still processing its capture"
        " of 79.80 EUR; it ships when that settles; `docket order ship D-001 1` asks again,"
        " `docket order cancel D-001` gives up"
    )
    refused = capture.model_copy(update={"result": Result.failed, "note": "insufficient funds"})
    held = record.model_copy(update={"payments": [capture, refused]})  # the latest answer counts
    assert show.why_held(held, 1).startswith(
        "delivery 1 of order D-001 is held, not shipped: the gateway refused its capture of 79.80 EUR"
        " (insufficient funds);"
    )


def test_a_page_past_the_last_says_how_many_pages_there_are() -> None:
    order = a_returned_order().order
    lines = printed(
        show.order_page(OrderPage(orders=[], page=99, page_size=50, total=6)),
        show.order_page(OrderPage(orders=[], page=4, page_size=2, total=6)),
        show.mail_page(MailPage(mails=[], page=2, page_size=50, total=1)),
        show.order_page(OrderPage(orders=[], page=1, page_size=50, total=0)),
        show.order_page(OrderPage(orders=[order], page=3, page_size=2, total=5)),
    ).splitlines()
    assert lines[:4] == [
        "no page 99: 6 orders, 50 to a page; there is one",
        "no page 4: 6 orders, 2 to a page; the last is 3",
        "no page 2: 1 mail, 50 to a page; there is one",
        "no order found",
    ]
    assert "orders (page 3, 1 of 5)" in lines[4]  # the last page, as it is


def test_the_callback_inbox_keeps_event_ids_and_times_whole_on_80_columns() -> None:
    def stored(callback_id: int, processed: bool) -> CallbackView:
        return CallbackView(
            callback_id=callback_id,
            gateway="sandbox",
            event_id=f"evt-sbx_a0e55768657f-{callback_id}",
            shop_id="harbour",
            order_id="D-001",
            source="203.0.113.7",
            received_at=AT,
            processed_at=AT + dt.timedelta(minutes=1) if processed else None,
            status=200 if processed else None,
            outcome="payment ok: order in_progress" if processed else None,
        )

    text = printed(show.callbacks([stored(1, True), stored(2, False)]))
    assert re.search(r"│ 1 sandbox +│ D-001 +│ 2026-11-24 09:30 │ 200 payment ok: +│", text)
    assert re.search(
        r"│ evt-sbx_a0e55768657f-1 │ 203\.0\.113\.7 +│ 2026-11-24 09:31 │ order in_progress +│", text
    )
    assert re.search(r"│ evt-sbx_a0e55768657f-2 │ 203\.0\.113\.7 +│ waiting +│", text)


def test_an_orders_history_puts_who_under_when_on_80_columns_and_beside_it_when_wide() -> None:
    narrow = printed(show.order_record(a_returned_order()))
    assert re.search(r"│ 2026-11-23 09:30 │ order +│ confirm_payment: +│ bank transfer seen +│", narrow)
    assert re.search(r"│ hanna +│ +│ waiting_confirmation → +│", narrow)  # who under when; words whole
    wide = printed(show.order_record(a_returned_order()), width=130)
    assert re.search(
        r"│ 2026-11-23 09:30 │ hanna │ order +│ confirm_payment: waiting_confirmation → in_progress +│", wide
    )


def test_a_receipt_names_the_orders_it_made_whole_and_those_still_short() -> None:
    received = StockReceived(
        reference="dn-7",
        level=StockLevel(warehouse_id="hamburg", sku="LAMP", on_hand=3, reserved=3, backordered=1),
        woken=[WokenDelivery(order_id="D-2", delivery_no=1, reserved=2)],
        partly=[WokenDelivery(order_id="D-3", delivery_no=1, reserved=1, short=1)],
    )
    assert show.stock_received(received).plain.splitlines() == [
        "hamburg/LAMP: on hand 3, reserved 3, back-ordered 1",
        "  woke order D-2 delivery 1 (+2 reserved)",
        "  order D-3 delivery 1 took 1, still waits for 1",
    ]


def test_payments_on_80_columns_keep_operations_and_results_whole() -> None:
    record = a_returned_order()
    first = record.payments[0]
    payments = [
        first.model_copy(
            update={"gateway": "sandbox", "operation": Operation.reverse_authorization, "note": "cancelled"}
        ),
        first.model_copy(
            update={
                "operation": Operation.refund,
                "result": Result.manual_required,
                "settled": False,
                "note": "damaged; gateway: refund by hand, then record it",
            }
        ),
    ]
    record = record.model_copy(update={"payments": payments})

    narrow = printed(show.payments(record))
    assert re.search(r"│ sandbox +│ reverse_authorization +│ +79\.80 +│ cancelled +│", narrow)
    assert re.search(r"│ hanna +│ +│ ok settled +│", narrow)  # the result under the operation
    assert re.search(r"│ offline +│ refund +│ +79\.80 +│ damaged; +│", narrow)
    assert re.search(r"│ hanna +│ +│ manual_required +│ +│ gateway: +│", narrow)
    wide = printed(show.payments(record), width=120)
    assert re.search(
        r"│ hanna +│ sandbox +│ reverse_authorization +│ +79\.80 +│ ok settled +│ cancelled +│", wide
    )
    assert re.search(
        r"│ offline +│ refund +│ +79\.80 +│ manual_required +│ damaged; gateway: refund by +│", wide
    )


def test_an_order_with_many_lines_keeps_its_deliveries_states_whole_on_80_columns() -> None:
    order = a_returned_order().order
    first = order.deliveries[0]
    lines = [first.lines[0].model_copy(update={"line_no": n, "sku": f"SKU-LONG-{n}"}) for n in range(8)]
    held = first.model_copy(
        update={
            "state": DeliveryState.shipping_waiting_payment,
            "lines": lines,
            "warehouse_id": "hamburg-north",
        }
    )
    text = printed(show.order_summary(order.model_copy(update={"deliveries": [held]})))
    assert re.search(r"│ 1 +│ D1 +│ hamburg-north │ shipping_waiting_payment │ SKU-LONG-0 x2, +│", text)
    assert re.search(r"│ +│ +│ +│ +│ SKU-LONG-7 x2 +│", text)  # the lines fold, between lines
