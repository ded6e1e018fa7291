"""Outbox rows: who is told what by a move, written in the move's own transaction; then what
became of each mail (sent, failed for good, or still pending after a transient failure)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from docket.models.access import Role
from docket.models.errors import NotFound
from docket.models.notifications import MAIL_FAILED, Recipient, notifications_for
from docket.models.schemas import MailPage, MailState
from docket.store import queries
from docket.store.appends import append, keep_ids, written
from docket.store.stock import MoveContext
from docket.store.tables import (
    Customer,
    Delivery,
    OperatorRow,
    Order,
    OutboxRow,
    Product,
    Shop,
    Warehouse,
)

# --- written by moves ---------------------------------------------------------------------------

_HANDED_OVER = "docket-mail-handed-over"
_UNSENT = (MailState.pending.value, MailState.sending.value)


def hand_over(session: Session) -> None:
    """The mail this transaction writes is sent by its caller right after the commit: it is written
    `sending`, which the background delivery leaves alone. The caller records what became of each
    (a transient failure makes it `pending`: the background's then)."""
    session.info[_HANDED_OVER] = True


def _born(session: Session) -> str:
    return (MailState.sending if session.info.get(_HANDED_OVER) else MailState.pending).value


keep_ids(OutboxRow, by="key")  # the move's activity sends what it wrote without reading it back

OUTBOX: Table = OutboxRow.__table__  # type: ignore[assignment]  # Core statements on the hot path


# What the notifications of every move read besides the order, built once, on the tables (a plain
# select skips the ORM's query compilation).
_OPERATORS, _WAREHOUSES, _PRODUCTS = (m.__table__.c for m in (OperatorRow, Warehouse, Product))
_OPERATOR = select(_OPERATORS.email, _OPERATORS.roles).where(_OPERATORS.operator_id == bindparam("id"))
_WAREHOUSE = select(_WAREHOUSES.name, _WAREHOUSES.fulfilment_emails).where(
    _WAREHOUSES.warehouse_id == bindparam("id")
)
_NAMES = "docket-product-names"
_PRODUCT_NAMES = select(_PRODUCTS.sku, _PRODUCTS.name).where(
    _PRODUCTS.sku.in_(bindparam("skus", expanding=True))
)


def write(
    session: Session,
    move_id: str,
    order: Order,
    delivery: Delivery | None,
    lifecycle: str,
    trigger: str,
    ctx: MoveContext,
) -> None:
    wanted = notifications_for(lifecycle, trigger)
    if not wanted:
        return
    data = _data(session, order, delivery, trigger, ctx)
    no = delivery.delivery_no if delivery else "-"
    for kind, template in wanted:
        cc = _on_behalf_of(session, ctx.operator_id) if kind is Recipient.customer else None
        for address in _addresses(session, kind, order, delivery):
            append(
                session,
                OutboxRow,
                key=f"{move_id}|{no}|{kind.value}|{address}|{template}",
                created_at=ctx.at,
                order_id=order.order_id,
                delivery_no=delivery.delivery_no if delivery else None,
                recipient_kind=kind.value,
                recipient=address,
                cc=cc if cc != address else None,
                template_key=template,
                data=data,
                state=_born(session),
                attempts=0,
            )


def _on_behalf_of(session: Session, operator_id: str | None) -> str | None:
    """The operator who acted for the customer, to be copied; a storefront acts for nobody."""
    if operator_id is None:
        return None
    operator = queries.first(session, _OPERATOR, id=operator_id)
    if operator is None or not operator.email or Role.storefront.value in operator.roles:
        return None
    return str(operator.email)


def _addresses(session: Session, kind: Recipient, order: Order, delivery: Delivery | None) -> list[str]:
    if kind is Recipient.customer:
        customer = queries.row(session, Customer, order.customer_id)
        return [customer.email] if customer else []
    if kind is Recipient.shop_admin:
        shop = queries.row(session, Shop, order.shop_id)
        return list(shop.admin_emails) if shop else []
    if delivery is None or delivery.warehouse_id is None:
        return []
    warehouse = queries.first(session, _WAREHOUSE, id=delivery.warehouse_id)
    return list(warehouse.fulfilment_emails) if warehouse else []


def _product_names(session: Session, skus: set[str]) -> dict[str, str]:
    """Product names, each read once per transaction (a move may write the mail of several)."""
    names: dict[str, str] = session.info.setdefault(_NAMES, {})
    if missing := [sku for sku in skus if sku not in names]:
        found = session.connection().execute(_PRODUCT_NAMES, {"skus": missing})  # no move changes them
        names.update((sku, name) for sku, name in found)
    return names


def _data(
    session: Session, order: Order, delivery: Delivery | None, trigger: str, ctx: MoveContext
) -> dict[str, Any]:
    """What the templates may use: plain JSON, money as strings, times in UTC ISO form (the
    templates show them in the shop's time zone)."""
    customer = queries.row(session, Customer, order.customer_id)
    shop = queries.row(session, Shop, order.shop_id)
    told = [
        line
        for line in queries.order_lines(session, order.order_id)
        if delivery is None or line.delivery_no == delivery.delivery_no
    ]
    names = _product_names(session, {line.sku for line in told})
    lines = []
    for line in told:
        lines.append(
            {
                "line_no": line.line_no,
                "sku": line.sku,
                "name": names.get(line.sku, line.sku),
                "quantity": line.quantity,
                "unit_price": str(line.unit_price),
                "amount": str(line.unit_price * line.quantity),
                "delivery_no": line.delivery_no,
            }
        )
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
        warehouse = (
            queries.first(session, _WAREHOUSE, id=delivery.warehouse_id) if delivery.warehouse_id else None
        )
        data |= {
            "delivery_no": delivery.delivery_no,
            "delivery_group": delivery.group.value,
            "warehouse_id": delivery.warehouse_id,
            "warehouse_name": warehouse.name if warehouse else None,
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


def pending(session: Session, order_id: str | None = None, limit: int = 500) -> list[Letter]:
    """Rows still to send (of one order, or of every order), oldest first."""
    row = OUTBOX.c
    query = (
        select(
            row.outbox_id,
            row.key,
            row.order_id,
            Order.shop_id,
            row.recipient_kind,
            row.recipient,
            row.cc,
            row.template_key,
            row.data,
        )
        .join(Order, Order.order_id == row.order_id)
        .where(row.state == MailState.pending.value)
        .order_by(row.outbox_id)
        .limit(limit)
    )
    if order_id is not None:
        query = query.where(row.order_id == order_id)
    return [Letter(*found) for found in session.execute(query)]


def written_letters(session: Session) -> list[Letter]:
    """The rows this session's last commit wrote, as letters."""
    return [
        Letter(
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
        for outbox_id, row in written(session, OutboxRow)
    ]


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


# Recording mail as sent follows every move: built once.
_SENT = (
    update(OUTBOX)
    .where(OUTBOX.c.outbox_id.in_(bindparam("ids", expanding=True)), OUTBOX.c.state.in_(_UNSENT))
    .values(
        state=MailState.sent.value,
        sent_at=bindparam("at", type_=OUTBOX.c.sent_at.type),
        error=None,
        attempts=OUTBOX.c.attempts + 1,
    )
)


def mark_sent(db: Session | Connection, outbox_ids: list[int], at: dt.datetime) -> None:
    """Mail the server accepted; only rows not yet sent or failed change."""
    db.execute(_SENT, {"ids": outbox_ids, "at": at})


def record(
    session: Session, letters: dict[int, Letter], outcomes: Iterable[Outcome], at: dt.datetime
) -> list[Letter]:
    """Write down what became of each mail; only rows not yet sent or failed change (a row
    recorded as sent is never sent again); one that must wait becomes `pending`. A mail that
    failed for good is reported to the shop's admins once. Returns the reports written."""
    outcomes = list(outcomes)
    row = OUTBOX.c
    sent = [o.outbox_id for o in outcomes if o.sent]
    if sent:
        mark_sent(session, sent, at)
    reports: list[Letter] = []
    for outcome in outcomes:
        if outcome.sent:
            continue
        values: dict[str, Any] = {
            "error": outcome.error,
            "attempts": row.attempts + 1,
            "state": (MailState.failed if outcome.permanent else MailState.pending).value,
        }
        changed = session.execute(
            update(OUTBOX).where(row.outbox_id == outcome.outbox_id, row.state.in_(_UNSENT)).values(**values)
        )
        if changed.rowcount == 1 and outcome.permanent:  # type: ignore[attr-defined]
            reports += _report_failure(session, letters[outcome.outbox_id], outcome.error or "", at)
    return reports


def release(session: Session, order_id: str) -> None:
    """Mail handed to a move that did not record it (its worker died): anyone's to send now."""
    session.execute(
        update(OUTBOX)
        .where(OUTBOX.c.order_id == order_id, OUTBOX.c.state == MailState.sending.value)
        .values(state=MailState.pending.value)
    )


def _report_failure(session: Session, letter: Letter, reason: str, at: dt.datetime) -> list[Letter]:
    kind, template = MAIL_FAILED
    if letter.template_key == template:
        return []  # a report that cannot be delivered is not reported again
    shop = queries.row(session, Shop, letter.shop_id)
    data = {
        **letter.data,
        "failed_outbox_id": letter.outbox_id,
        "failed_recipient": letter.recipient,
        "failed_template": f"{letter.kind}/{letter.template_key}",
        "reason": reason,
        "at": at.isoformat(),
    }
    # The key makes a second failure of the same mail (after a retry) write nothing more.
    to = {
        f"mail-failed|{letter.outbox_id}|{address}": address
        for address in (shop.admin_emails if shop else [])
    }
    if not to:
        return []
    rows = [
        {
            "key": key,
            "created_at": at,
            "order_id": letter.order_id,
            "delivery_no": letter.data.get("delivery_no"),
            "recipient_kind": kind.value,
            "recipient": address,
            "cc": None,
            "template_key": template,
            "data": data,
            "state": _born(session),
            "attempts": 0,
        }
        for key, address in to.items()
    ]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    insert = dialect.insert(OUTBOX).values(rows).on_conflict_do_nothing(index_elements=["key"])
    inserted = session.connection().execute(insert.returning(OUTBOX.c.key, OUTBOX.c.outbox_id))
    return [
        Letter(id_, key, letter.order_id, letter.shop_id, kind.value, to[key], None, template, data)
        for key, id_ in inserted
    ]


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
