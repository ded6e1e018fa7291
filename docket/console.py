"""Rendering views for people at a terminal (Rich). Shared by the CLI and the demo."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.table import Table
from rich.text import Text

from docket.models.currencies import amount_text
from docket.models.payments import Operation, Result
from docket.models.schemas import (
    CallbackView,
    CustomerChangeView,
    CustomerPage,
    CustomerView,
    DeliveryPage,
    DeliveryView,
    LedgerReport,
    MailPage,
    MailRetried,
    OrderPage,
    OrderRecord,
    OrderView,
    OutboxView,
    RenderedMail,
    Saved,
    StockLevel,
    StockMovementView,
    StockReceived,
)

STATE_STYLE = {
    "completed": "green",
    "shipped": "green",
    "in_progress": "cyan",
    "allocated": "cyan",
    "cancelled": "red",
    "rejected": "red",
    "reservation_voided": "red",
    "deallocated": "red",
    "returned": "magenta",
    "waiting_confirmation": "yellow",
    "wait_inventory": "yellow",
    "wait_date": "yellow",
    "sent": "green",
    "pending": "yellow",
    "sending": "yellow",
    "failed": "red",
    "ok": "green",
    "processing": "yellow",
    "manual_required": "yellow",
}


STAMP = "%Y-%m-%d %H:%M"  # tables show times to the minute; `--json` has them whole


def _table(
    title: str, *columns: str, whole: dict[str, int] | None = None, right: tuple[str, ...] = ()
) -> Table:
    """Cells fold onto the next line instead of being cut short with an ellipsis: an order id or a
    state read off a narrow terminal must be whole. Columns in `whole` (times, identifiers) are
    never wrapped and keep at least the width given; on a terminal too narrow for all the columns,
    the others give way first."""
    made = Table(title=title, title_justify="left")
    for column in columns:
        width = (whole or {}).get(column)
        made.add_column(
            column,
            overflow="fold",
            no_wrap=width is not None,
            min_width=width,
            justify="right" if column in right else "left",
        )
    return made


def _money(amount: Decimal, currency: str) -> str:
    return f"{amount_text(amount, currency)} {currency}"


def state(value: str) -> Text:
    return Text(value, style=STATE_STYLE.get(value, "white"))


def order_summary(view: OrderView) -> Group:
    """The deliveries' table, then one line for the order: shop, customer, total, state (and why
    it was rejected), as wide as the terminal; a table's caption would fold at the table's width."""
    table = _table(
        f"order {view.order_id}",
        *("delivery", "group", "warehouse", "state", "lines"),
        whole={"delivery": 0, "group": 0, "warehouse": 0, "state": 0},
    )
    for d in view.deliveries:
        table.add_row(
            str(d.delivery_no), d.group.value, d.warehouse_id or "-", state(d.state.value), _lines(d)
        )
    line = Text(f"{view.shop_id} · customer {view.customer_id} · {_money(view.total, view.currency)} · ")
    line.append_text(state(view.state.value))
    if view.rejection:
        line.append(f" · {view.rejection}", style="red")
    return Group(table, line)


def why_held(record: OrderRecord, delivery_no: int) -> str:
    """Why `ship` left a parcel at the door (pay per shipment: its capture was refused or is still
    processing at the gateway), and what can be done."""
    order_id = record.order.order_id
    captures = [
        t for t in record.payments if t.delivery_no == delivery_no and t.operation is Operation.capture
    ]
    last = captures[-1] if captures else None
    amount = _money(last.amount, last.currency) if last else ""
    if last and last.result is Result.processing:
        why = f"the gateway is still processing its capture of {amount}; it ships when that settles"
    elif last and last.result is Result.failed:
        why = f"the gateway refused its capture of {amount}" + (f" ({last.note})" if last.note else "")
    else:
        why = "its capture was not made"
    return (
        f"delivery {delivery_no} of order {order_id} is held, not shipped: {why}; "
        f"`docket order ship {order_id} {delivery_no}` asks again, `docket order cancel {order_id}` gives up"
    )


WIDE = 110  # columns from which tables give each thing a column of its own


@dataclass(frozen=True)
class ByWidth:
    """A table laid out for the width it is printed at: `layout(wide)`. Narrower than `WIDE`,
    tables put some cells under others so that ids, states, times and the words of a move stay
    whole on an 80-column terminal."""

    layout: Callable[[bool], RenderableType]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.layout(options.max_width >= WIDE)


def _when(at: dt.datetime, operator_id: str | None, wide: bool) -> tuple[str | Text, ...]:
    """When and who: two columns, or who under when."""
    who = operator_id or "docket"
    if wide:
        return at.strftime(STAMP), who
    return (Text(f"{at.strftime(STAMP)}\n").append(who, style="dim"),)


def order_record(record: OrderRecord) -> Group:
    return Group(
        order_summary(record.order),
        payments(record),
        history(record),
        stock_movements(record),
        notifications(record),
    )


def history(record: OrderRecord) -> ByWidth:
    return ByWidth(lambda wide: _history(record, wide))


def _history(record: OrderRecord, wide: bool) -> Table:
    when = ("at", "who") if wide else ("when, who",)
    table = _table("history", *when, "what", "move", "note", whole={"at": 16, "when, who": 16})
    for h in record.history:
        move = Text(f"{h.trigger}: {h.from_state or '-'} → ")  # wraps between words on a narrow terminal
        table.add_row(
            *_when(h.at, h.operator_id, wide), h.entity, move.append_text(state(h.to_state)), h.note or ""
        )
    return table


def notifications(record: OrderRecord) -> Table:
    """Who a mail went to beside the address (wrapping under it on a narrow terminal); the error
    column only when a mail has an error."""
    columns: tuple[str, ...] = ("id", "to", "template", "state", "error")
    if not any(n.error for n in record.notifications):
        columns = columns[:-1]
    table = _table("notifications", *columns, whole={"template": 0, "state": 0})
    for n in record.notifications:
        to = Text(n.recipient).append(f" ({n.recipient_kind})", style="dim")
        row = (str(n.outbox_id), to, n.template_key, state(n.state.value), n.error or "")
        table.add_row(*row[: len(columns)])
    return table


def stock_movements(record: OrderRecord) -> Table | Text:
    """Grouped by delivery under a line naming it, goods back on the shelf last under "returns": a
    column for the delivery would leave the notes no room on an 80-column terminal."""
    if not record.stock_movements:
        return Text("stock movements: none")
    table = _table(
        "stock movements",
        *("at", "stock", "kind", "on hand", "reserved", "note"),
        whole={"at": 16, "stock": 0, "kind": 0, "on hand": 0, "reserved": 0},
        right=("on hand", "reserved"),
    )
    groups: dict[int | None, list[StockMovementView]] = {}
    for m in record.stock_movements:
        groups.setdefault(m.delivery_no, []).append(m)
    for delivery_no in sorted(groups, key=lambda n: (n is None, n or 0)):
        heading = f"delivery {delivery_no}" if delivery_no is not None else "returns"
        table.add_row(Text(heading, style="bold"))
        for m in groups[delivery_no]:
            table.add_row(
                m.at.strftime(STAMP),
                f"{m.warehouse_id}/{m.sku}",
                m.kind.value,
                f"{m.on_hand_delta:+d}",
                f"{m.reserved_delta:+d}",
                m.note or "",
            )
    return table


def _lines(d: DeliveryView) -> str:
    return ", ".join(
        f"{line.sku} x{line.quantity}"
        + (f" (reserved {line.reserved})" if 0 < line.reserved < line.quantity else "")
        for line in d.lines
    )


def delivery_page(page: DeliveryPage) -> Table | Text:
    """A work list: each delivery under its order's id and number, as `order pack ID NO` takes them."""
    if nothing := _nothing_on(page, "delivery", "deliveries"):
        return nothing
    table = _table(
        f"deliveries, oldest order first (page {page.page}, {len(page.deliveries)} of {page.total})",
        *("order", "no", "placed", "warehouse", "state", "lines"),
        whole={"placed": 16, "warehouse": 0, "state": 0},
    )
    for d in page.deliveries:
        order = Text(d.order_id).append(f"\n{d.shop_id}", style="dim")
        placed = d.placed_at.strftime(STAMP)
        table.add_row(
            order, str(d.delivery_no), placed, d.warehouse_id or "-", state(d.state.value), _lines(d)
        )
    return table


def payments(record: OrderRecord) -> ByWidth:
    return ByWidth(lambda wide: _payments(record, wide))


def _payments(record: OrderRecord, wide: bool) -> Table | Text:
    """Wide, a column each; narrower, the result under the operation, so that neither folds in
    the middle of a word (`reverse_authorization`, `manual_required`)."""
    p = record.payment
    if not record.payments:  # a title over an empty table reads as a rendering fault
        return Text(f"payment: {p.status.value} · no payment recorded")
    columns = (
        ("at", "who", "gateway", "operation", "amount", "result", "note")
        if wide
        else ("when, who", "gateway", "operation, result", "amount", "note")
    )
    table = _table(
        f"payment: {p.status.value} · captured {amount_text(p.captured, p.currency)}"
        f" · refunded {_money(p.refunded, p.currency)}",
        *columns,
        whole={"at": 16, "when, who": 16, "operation": 0, "operation, result": 0, "amount": 0, "result": 0},
        right=("amount",),
    )
    for t in record.payments:
        operation = t.operation.value + (f" (delivery {t.delivery_no})" if t.delivery_no else "")
        result = state(t.result.value) + (Text(" settled") if t.settled else Text(""))
        amount = amount_text(t.amount, p.currency)  # in the currency the title names: an order has one
        cells = (operation, amount, result) if wide else (Text(f"{operation}\n").append_text(result), amount)
        table.add_row(*_when(t.at, t.operator_id, wide), t.gateway, *cells, t.note or "")
    return table


def _nothing_on(
    page: OrderPage | CustomerPage | MailPage | DeliveryPage, what: str, whats: str = ""
) -> Text | None:
    """What to say instead of an empty table: nothing found, or a page past the last."""
    if not page.total:
        return Text(f"no {what} found")
    pages = -(-page.total // page.page_size)
    if page.page > pages:
        noun = (whats or f"{what}s") if page.total > 1 else what
        found = f"{page.total} {noun}"
        last = f"the last is {pages}" if pages > 1 else "there is one"
        return Text(f"no page {page.page}: {found}, {page.page_size} to a page; {last}")
    return None


def order_page(page: OrderPage) -> ByWidth | Text:
    """Wide, each order's deliveries too; narrower, the shop under the order id, the customer
    under the time it was placed (a column of its own would fold its header beside the longest
    states) and the deliveries left to `order show`."""
    if nothing := _nothing_on(page, "order"):
        return nothing
    return ByWidth(lambda wide: _order_page(page, wide))


def _order_page(page: OrderPage, wide: bool) -> Table:
    columns = ("order", "shop", "customer", "placed", "state", "total", "deliveries")
    table = _table(
        f"orders (page {page.page}, {len(page.orders)} of {page.total})",
        *(columns if wide else ("order", "placed, customer", "state", "total")),
        whole={"placed": 16, "placed, customer": 16, "state": 0, "total": 0},
        right=("total",),
    )
    for o in page.orders:
        placed, total = o.placed_at.strftime(STAMP), _money(o.total, o.currency)
        if wide:
            deliveries = " ".join(f"{d.group.value}:{d.state.value}" for d in o.deliveries)
            table.add_row(
                o.order_id, o.shop_id, o.customer_id, placed, state(o.state.value), total, deliveries
            )
        else:
            order = Text(o.order_id).append(f"\n{o.shop_id}", style="dim")
            table.add_row(order, f"{placed}\n{o.customer_id}", state(o.state.value), total)
    return table


def stock_levels(levels: list[StockLevel]) -> Table:
    table = _table(
        "stock",
        "warehouse",
        "sku",
        "on hand",
        "reserved",
        "available",
        "back-ordered",
        right=("on hand", "reserved", "available", "back-ordered"),
    )
    for s in levels:
        table.add_row(
            s.warehouse_id, s.sku, str(s.on_hand), str(s.reserved), str(s.available), str(s.backordered)
        )
    return table


def customer(view: CustomerView, outcome: Saved | None = None) -> Text:
    text = Text(f"{view.customer_id}: {view.name} <{view.email}>")
    if outcome is not None:
        text.append(f" ({outcome.value})", style="yellow" if outcome is Saved.unchanged else "green")
    return text


def customer_history(changes: list[CustomerChangeView]) -> Table:
    table = _table("changes", "at", "who", "what", "name", "e-mail", whole={"at": 16})
    for c in changes:
        table.add_row(c.at.strftime(STAMP), c.operator_id or "catalogue", c.outcome.value, c.name, c.email)
    return table


def customer_page(page: CustomerPage) -> Table | Text:
    if nothing := _nothing_on(page, "customer"):
        return nothing
    table = _table(
        f"customers (page {page.page}, {len(page.customers)} of {page.total})",
        *("customer", "name", "e-mail"),
        whole={"customer": 0},
    )
    for c in page.customers:
        table.add_row(c.customer_id, c.name, c.email)
    return table


def stock_received(received: StockReceived) -> Text:
    level = received.level
    text = Text(f"{level.warehouse_id}/{level.sku}: on hand {level.on_hand}, reserved {level.reserved}")
    if level.backordered:
        text.append(f", back-ordered {level.backordered}")
    if received.duplicate:
        text.append(
            f" (reference {received.reference} was already recorded; nothing changed)", style="yellow"
        )
    for woken in received.woken:
        text.append(
            f"\n  woke order {woken.order_id} delivery {woken.delivery_no} (+{woken.reserved} reserved)"
        )
    for part in received.partly:
        text.append(
            f"\n  order {part.order_id} delivery {part.delivery_no} took {part.reserved},"
            f" still waits for {part.short}"
        )
    return text


def ledger_report(report: LedgerReport) -> Group | Text:
    summary = (
        f"{report.counters_checked} counters, {report.movements_checked} movements, "
        f"{report.lines_checked} order lines checked"
    )
    if report.ok:
        return Text(f"ledger OK: {summary}", style="green")
    table = _table("ledger problems", "where", "expected", "found")
    for p in report.problems:
        table.add_row(p.where, p.expected, p.found)
    return Group(Text(f"ledger BROKEN: {summary}", style="bold red"), table)


def mail_page(page: MailPage) -> Table | Text:
    """A mail's address and who it is (customer, shop admin, fulfilment centre) above its template;
    its state and tries above when it went; the error column only when a mail on the page has one:
    on an 80-column terminal addresses and errors need the room."""
    if nothing := _nothing_on(page, "mail"):
        return nothing
    columns: tuple[str, ...] = ("id", "order", "mail", "state", "error")
    if not any(m.error for m in page.mails):
        columns = columns[:-1]
    table = _table(f"mail ({page.total}, page {page.page})", *columns, whole={"state": 16})
    for m in page.mails:
        table.add_row(*_mail_row(m)[: len(columns)])
    return table


def _mail_row(m: OutboxView) -> list[str | Text]:
    to = m.recipient + (f" (cc {m.cc})" if m.cc else "")
    tries = f"{m.attempts} {'try' if m.attempts == 1 else 'tries'}"
    return [
        str(m.outbox_id),
        m.order_id + (f"/{m.delivery_no}" if m.delivery_no else ""),
        Text(f"{to} ({m.recipient_kind})\n").append(m.template_key, style="dim"),
        state(m.state.value).append(f", {tries}\n").append(m.sent_at.strftime(STAMP) if m.sent_at else "-"),
        m.error or "",
    ]


def rendered_mail(rendered: RenderedMail) -> Group:
    m = rendered.mail
    head = Table.grid(padding=(0, 2))
    head.add_row("To", m.recipient)
    if m.cc:
        head.add_row("Cc", m.cc)
    head.add_row("Subject", rendered.subject or "-")
    head.add_row("Message-ID", rendered.message_id)
    head.add_row("Template", f"{m.recipient_kind}/{m.template_key}")
    head.add_row("State", state(m.state.value))
    head.add_row("Attempts", str(m.attempts))
    if m.sent_at:
        head.add_row("Sent", m.sent_at.strftime("%Y-%m-%d %H:%M:%S %Z"))
    if m.error:
        head.add_row("Error", Text(m.error, style="red"))
    body: Text = (
        Text(rendered.text or "")
        if rendered.render_error is None
        else Text(rendered.render_error, style="red")
    )
    return Group(head, Text(""), body)


def mail_retried(retried: MailRetried) -> Text:
    if not retried.retried:
        return Text("nothing to retry: no failed mail matched")
    ids = ", ".join(str(n) for n in retried.retried)
    return Text(f"back to pending and on their way: {ids} (orders {', '.join(retried.orders)})")


def callbacks(found: list[CallbackView]) -> Table | Text:
    """One callback in four columns that wrap where they should: id and gateway above the
    gateway's event id; the order above the address the callback came from; when it came above
    when it was processed; the answer (status and outcome)."""
    if not found:
        return Text("no callbacks waiting")
    table = _table(
        "gateway callbacks", "callback", "order", "received", "answer", whole={"callback": 0, "received": 16}
    )
    for c in found:
        processed = c.processed_at.strftime(STAMP) if c.processed_at else "waiting"
        table.add_row(
            Text(f"{c.callback_id} {c.gateway}\n").append(c.event_id, style="dim"),
            Text(f"{c.order_id or '-'}\n").append(c.source or "-", style="dim"),
            Text(f"{c.received_at.strftime(STAMP)}\n").append(processed, style="dim"),
            f"{c.status or '-'} {c.outcome or ''}".strip(),
        )
    return table
