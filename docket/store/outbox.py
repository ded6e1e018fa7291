"""Outbox rows: who is told what by a move, written in the move's own transaction; then what
became of each mail (sent, failed for good, or still pending after a transient failure)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, bindparam, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from docket.models.access import Role
from docket.models.errors import NotFound
from docket.models.notifications import MAIL_FAILED, Recipient, notifications_for
from docket.models.schemas import MailPage, MailState
from docket.store import queries
from docket.store.direct import Tx
from docket.store.rows import DeliveryRow, OrderRow, customer_row, insert_of, order_lines, set_from, shop_row
from docket.store.stock import MoveContext
from docket.store.tables import OperatorRow, Order, OutboxRow, Product, Warehouse

# --- written by moves ---------------------------------------------------------------------------

_HANDED_OVER = "docket-mail-handed-over"
_LETTERS = "docket-letters"
_UNSENT = or_(OutboxRow.state == MailState.pending.value, OutboxRow.state == MailState.sending.value)


def hand_over(tx: Tx) -> None:
    """The mail this transaction writes is sent by its caller right after the commit: it is written
    `sending`, which the background delivery leaves alone. The caller records what became of each
    (a transient failure makes it `pending`: the background's then)."""
    tx.kept[_HANDED_OVER] = True


def _born(tx: Tx) -> str:
    return (MailState.sending if tx.kept.get(_HANDED_OVER) else MailState.pending).value


_COLUMNS = (
    "key",
    "created_at",
    "order_id",
    "delivery_no",
    "recipient_kind",
    "recipient",
    "cc",
    "template_key",
    "data",
    "state",
    "attempts",
)
# The id comes back at once: the move's activity sends what it wrote without reading it again.
_INSERT = insert_of(OutboxRow, *_COLUMNS).returning(OutboxRow.outbox_id)

# What the notifications of every move read besides the order (kept for the transaction).
_OPERATOR = select(OperatorRow.email, OperatorRow.roles).where(OperatorRow.operator_id == bindparam("id"))
_WAREHOUSE = select(Warehouse.name, Warehouse.fulfilment_emails).where(
    Warehouse.warehouse_id == bindparam("id")
)
_PRODUCT_NAME = select(Product.name).where(Product.sku == bindparam("sku"))


def write(
    tx: Tx,
    move_id: str,
    order: OrderRow,
    delivery: DeliveryRow | None,
    lifecycle: str,
    trigger: str,
    ctx: MoveContext,
) -> None:
    wanted = notifications_for(lifecycle, trigger)
    if not wanted:
        return
    data = _data(tx, order, delivery, trigger, ctx)
    no = delivery.delivery_no if delivery else "-"
    for kind, template in wanted:
        cc = _on_behalf_of(tx, ctx.operator_id) if kind is Recipient.customer else None
        for address in _addresses(tx, kind, order, delivery):
            _add(
                tx,
                key=f"{move_id}|{no}|{kind.value}|{address}|{template}",
                created_at=ctx.at,
                order_id=order.order_id,
                delivery_no=delivery.delivery_no if delivery else None,
                recipient_kind=kind.value,
                recipient=address,
                cc=cc if cc != address else None,
                template_key=template,
                data=data,
                state=_born(tx),
                attempts=0,
            )


def _add(tx: Tx, **row: Any) -> None:
    outbox_id = tx.scalar(_INSERT, **row)
    tx.kept.setdefault(_LETTERS, []).append(_letter(outbox_id, row))


def _letter(outbox_id: int, row: dict[str, Any]) -> Letter:
    return Letter(
        outbox_id,
        row["key"],
        row["order_id"],
        row["data"]["shop_id"],
        row["recipient_kind"],
        row["recipient"],
        row["cc"],
        row["template_key"],
        row["data"],
    )


def written_letters(tx: Tx) -> list[Letter]:
    """The rows this transaction wrote, as letters."""
    return list(tx.kept.get(_LETTERS, []))


def _kept(tx: Tx, statement: Any, key: str) -> Any:
    """The first row of `statement` for `key`, read once per transaction (operators and
    warehouses: no move changes them)."""
    if (statement, key) not in tx.kept:
        tx.kept[(statement, key)] = tx.first(statement, id=key)
    return tx.kept[(statement, key)]


def _on_behalf_of(tx: Tx, operator_id: str | None) -> str | None:
    """The operator who acted for the customer, to be copied; a storefront acts for nobody."""
    if operator_id is None:
        return None
    operator = _kept(tx, _OPERATOR, operator_id)
    if operator is None or not operator[0] or Role.storefront.value in operator[1]:
        return None
    return str(operator[0])


def _addresses(tx: Tx, kind: Recipient, order: OrderRow, delivery: DeliveryRow | None) -> list[str]:
    if kind is Recipient.customer:
        customer = customer_row(tx, order.customer_id)
        return [customer.email] if customer else []
    if kind is Recipient.shop_admin:
        shop = shop_row(tx, order.shop_id)
        return list(shop.admin_emails) if shop else []
    if delivery is None or delivery.warehouse_id is None:
        return []
    warehouse = _kept(tx, _WAREHOUSE, delivery.warehouse_id)
    return list(warehouse[1]) if warehouse else []


def _product_name(tx: Tx, sku: str) -> str:
    """A product's name, read once per transaction (a move may write the mail of several)."""
    key = ("product-name", sku)
    if key not in tx.kept:
        tx.kept[key] = tx.scalar(_PRODUCT_NAME, sku=sku) or sku
    return tx.kept[key]  # type: ignore[no-any-return]


def _data(
    tx: Tx, order: OrderRow, delivery: DeliveryRow | None, trigger: str, ctx: MoveContext
) -> dict[str, Any]:
    """What the templates may use: plain JSON, money as strings, times in UTC ISO form (the
    templates show them in the shop's time zone)."""
    customer = customer_row(tx, order.customer_id)
    shop = shop_row(tx, order.shop_id)
    told = [
        line
        for line in order_lines(tx, order.order_id)
        if delivery is None or line.delivery_no == delivery.delivery_no
    ]
    lines = [
        {
            "line_no": line.line_no,
            "sku": line.sku,
            "name": _product_name(tx, line.sku),
            "quantity": line.quantity,
            "unit_price": str(line.unit_price),
            "amount": str(line.unit_price * line.quantity),
            "delivery_no": line.delivery_no,
        }
        for line in told
    ]
    data: dict[str, Any] = {
        "order_id": order.order_id,
        "shop_id": order.shop_id,
        "shop_name": shop.name if shop else order.shop_id,
        "timezone": shop.timezone if shop else "UTC",
        "customer_name": customer.name if customer else None,
        "state": order.state.value,
        "payment_flow": order.payment_flow.value,
        "total": str(order.total),
        "currency": order.currency,
        "placed_at": _iso(order.placed_at),
        "payment_deadline": _iso(order.payment_deadline),
        "shipping_address": order.shipping_address,
        "trigger": trigger,
        "at": _iso(ctx.at),
        "note": ctx.note,
        "lines": lines,
    }
    if delivery is not None:
        warehouse = _kept(tx, _WAREHOUSE, delivery.warehouse_id) if delivery.warehouse_id else None
        data |= {
            "delivery_no": delivery.delivery_no,
            "delivery_group": delivery.group.value,
            "warehouse_id": delivery.warehouse_id,
            "warehouse_name": warehouse[0] if warehouse else None,
            "delivery_state": delivery.state.value,
            "release_at": _iso(delivery.release_at),
        }
    return data


def _iso(value: dt.datetime | None) -> str | None:
    moment = queries.as_utc(value)
    return moment.isoformat() if moment else None


# --- delivery -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Letter:
    """A pending outbox row, detached from its session: what the mailer renders and sends."""

    outbox_id: int
    key: str
    order_id: str
    shop_id: str
    kind: str
    recipient: str
    cc: str | None
    template_key: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    outbox_id: int
    sent: bool
    error: str | None = None
    permanent: bool = False


# Either filter may be left out: every order's pending mail (bench.mail reads it so).
_PENDING = (
    select(
        OutboxRow.outbox_id,
        OutboxRow.key,
        OutboxRow.order_id,
        Order.shop_id,
        OutboxRow.recipient_kind,
        OutboxRow.recipient,
        OutboxRow.cc,
        OutboxRow.template_key,
        OutboxRow.data,
    )
    .join(Order, Order.order_id == OutboxRow.order_id)
    .where(
        OutboxRow.state == MailState.pending.value,
        or_(
            bindparam("order_id", type_=OutboxRow.order_id.type).is_(None),
            OutboxRow.order_id == bindparam("order_id"),
        ),
    )
    .order_by(OutboxRow.outbox_id)
    .limit(bindparam("limit", type_=Integer()))
)


def pending(tx: Tx, order_id: str | None = None, limit: int = 500) -> list[Letter]:
    """Rows still to send (of one order, or of every order), oldest first."""
    return [Letter(*found) for found in tx.all(_PENDING, order_id=order_id, limit=limit)]


def letter(row: OutboxRow, shop_id: str) -> Letter:
    return Letter(
        row.outbox_id,
        row.key,
        row.order_id,
        shop_id,
        row.recipient_kind,
        row.recipient,
        row.cc,
        row.template_key,
        row.data,
    )


# Recording mail as sent follows every move: one row per id, in one call to the driver.
_SENT = (
    update(OutboxRow)
    .where(OutboxRow.outbox_id == bindparam("id"), _UNSENT)
    .values(
        state=MailState.sent.value,
        sent_at=bindparam("at", type_=OutboxRow.sent_at.type),
        error=None,
        attempts=OutboxRow.attempts + 1,
    )
)
_NOT_SENT = (
    update(OutboxRow)
    .where(OutboxRow.outbox_id == bindparam("id"), _UNSENT)
    .values({**set_from(OutboxRow, "state", "error"), OutboxRow.attempts: OutboxRow.attempts + 1})
)
_RELEASE = (
    update(OutboxRow)
    .where(OutboxRow.order_id == bindparam("order_id"), OutboxRow.state == MailState.sending.value)
    .values(state=MailState.pending.value)
)


def mark_sent(tx: Tx, outbox_ids: list[int], at: dt.datetime) -> None:
    """Mail the server accepted; only rows not yet sent or failed change."""
    tx.run_many(_SENT, [{"id": outbox_id, "at": at} for outbox_id in outbox_ids])


def record(tx: Tx, letters: dict[int, Letter], outcomes: Iterable[Outcome], at: dt.datetime) -> list[Letter]:
    """Write down what became of each mail; only rows not yet sent or failed change (a row
    recorded as sent is never sent again); one that must wait becomes `pending`. A mail that
    failed for good is reported to the shop's admins once. Returns the reports written."""
    outcomes = list(outcomes)
    sent = [o.outbox_id for o in outcomes if o.sent]
    if sent:
        mark_sent(tx, sent, at)
    reports: list[Letter] = []
    for outcome in outcomes:
        if outcome.sent:
            continue
        state = (MailState.failed if outcome.permanent else MailState.pending).value
        changed = tx.run(_NOT_SENT, id=outcome.outbox_id, state=state, error=outcome.error)
        if changed == 1 and outcome.permanent:
            reports += _report_failure(tx, letters[outcome.outbox_id], outcome.error or "", at)
    return reports


def release(tx: Tx, order_id: str) -> None:
    """Mail handed to a move that did not record it (its worker died): anyone's to send now."""
    tx.run(_RELEASE, order_id=order_id)


# A report is written once per failed mail and address: a second failure of the same mail (after
# a retry) writes nothing more. The statement is the dialect's own (ON CONFLICT DO NOTHING).
_REPORTS = {
    name: dialect.insert(OutboxRow)
    .values(set_from(OutboxRow, *_COLUMNS))
    .on_conflict_do_nothing(index_elements=["key"])
    .returning(OutboxRow.outbox_id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def _report_failure(tx: Tx, letter: Letter, reason: str, at: dt.datetime) -> list[Letter]:
    kind, template = MAIL_FAILED
    if letter.template_key == template:
        return []  # a report that cannot be delivered is not reported again
    shop = shop_row(tx, letter.shop_id)
    data = {
        **letter.data,
        "failed_outbox_id": letter.outbox_id,
        "failed_recipient": letter.recipient,
        "failed_template": f"{letter.kind}/{letter.template_key}",
        "reason": reason,
        "at": at.isoformat(),
    }
    reports = []
    for address in shop.admin_emails if shop else []:
        row = {
            "key": f"mail-failed|{letter.outbox_id}|{address}",
            "created_at": at,
            "order_id": letter.order_id,
            "delivery_no": letter.data.get("delivery_no"),
            "recipient_kind": kind.value,
            "recipient": address,
            "cc": None,
            "template_key": template,
            "data": data,
            "state": _born(tx),
            "attempts": 0,
        }
        outbox_id = tx.scalar(_REPORTS[tx.dialect.name], **row)
        if outbox_id is not None:  # None: reported before
            reports.append(_letter(outbox_id, row))
    return reports


# --- what operators see and do ------------------------------------------------------------------


def list_mail(
    session: Session,
    *,
    shops: set[str] | None,
    shop_id: str | None = None,
    order_id: str | None = None,
    state: MailState | None = None,
    recipient: str | None = None,
    page: int = 1,
    page_size: int = 50,
) -> MailPage:
    """Mails newest first. `shops` limits to what the operator may see (None: every shop)."""
    query = queries.of_shops(
        select(OutboxRow).join(Order, Order.order_id == OutboxRow.order_id), shops, shop_id
    )
    if order_id:
        query = query.where(OutboxRow.order_id == order_id)
    if state:
        query = query.where(OutboxRow.state == state.value)
    if recipient:
        query = query.where(OutboxRow.recipient == recipient)
    total, rows = queries.paged(session, query.order_by(OutboxRow.outbox_id.desc()), page, page_size)
    mails = [queries.mail_view(r) for r in rows.scalars()]
    return MailPage(mails=mails, page=page, page_size=page_size, total=total)


def mail_row(session: Session, outbox_id: int) -> tuple[OutboxRow, str]:
    """The row and its order's shop."""
    found = session.execute(
        select(OutboxRow, Order.shop_id)
        .join(Order, Order.order_id == OutboxRow.order_id)
        .where(OutboxRow.outbox_id == outbox_id)
    ).first()
    if found is None:
        raise NotFound(f"unknown mail {outbox_id}")
    return found[0], found[1]


def retry(session: Session, outbox_ids: list[int], order_id: str | None) -> list[tuple[int, str]]:
    """Failed rows back to pending; returns (outbox id, order id) of each row that changed."""
    query = select(OutboxRow.outbox_id, OutboxRow.order_id).where(OutboxRow.state == MailState.failed.value)
    if outbox_ids:
        query = query.where(OutboxRow.outbox_id.in_(outbox_ids))
    if order_id:
        query = query.where(OutboxRow.order_id == order_id)
    found = [(r.outbox_id, r.order_id) for r in session.execute(query)]
    if found:
        session.execute(
            update(OutboxRow)
            .where(
                OutboxRow.outbox_id.in_([outbox_id for outbox_id, _ in found]),
                OutboxRow.state == MailState.failed.value,
            )
            .values(state=MailState.pending.value)
            .execution_options(synchronize_session=False)
        )
    return found
