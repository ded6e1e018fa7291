"""Outbox rows: who is told what by a move, written in the move's own transaction."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from docket.models.notifications import Recipient, notifications_for
from docket.store import queries
from docket.store.appends import append
from docket.store.tables import Customer, Delivery, Order, OutboxRow, Shop, Warehouse


def write(
    session: Session,
    move_id: str,
    order: Order,
    delivery: Delivery | None,
    lifecycle: str,
    trigger: str,
    at: datetime,
) -> None:
    wanted = notifications_for(lifecycle, trigger)
    if not wanted:
        return
    data = _data(session, order, delivery, trigger)
    for kind, template in wanted:
        for address in _addresses(session, kind, order, delivery):
            no = delivery.delivery_no if delivery else "-"
            append(
                session,
                OutboxRow,
                key=f"{move_id}|{no}|{address}|{template}",
                created_at=at,
                order_id=order.order_id,
                delivery_no=delivery.delivery_no if delivery else None,
                recipient_kind=kind.value,
                recipient=address,
                template_key=template,
                data=data,
                state="pending",
            )


def _addresses(session: Session, kind: Recipient, order: Order, delivery: Delivery | None) -> list[str]:
    if kind is Recipient.customer:
        customer = session.get(Customer, order.customer_id)
        return [customer.email] if customer else []
    if kind is Recipient.shop_admin:
        shop = session.get(Shop, order.shop_id)
        return list(shop.admin_emails) if shop else []
    if delivery is None or delivery.warehouse_id is None:
        return []
    warehouse = session.get(Warehouse, delivery.warehouse_id)
    return list(warehouse.fulfilment_emails) if warehouse else []


def _data(session: Session, order: Order, delivery: Delivery | None, trigger: str) -> dict[str, Any]:
    customer = session.get(Customer, order.customer_id)
    lines = [
        {"sku": line.sku, "quantity": line.quantity, "unit_price": str(line.unit_price)}
        for line in queries.order_lines(session, order.order_id)
        if delivery is None or line.delivery_no == delivery.delivery_no
    ]
    data: dict[str, Any] = {
        "order_id": order.order_id,
        "shop_id": order.shop_id,
        "customer_name": customer.name if customer else None,
        "state": order.state.value,
        "total": str(order.total),
        "currency": order.currency,
        "trigger": trigger,
        "lines": lines,
    }
    if delivery is not None:
        data |= {
            "delivery_no": delivery.delivery_no,
            "delivery_group": delivery.group.value,
            "warehouse_id": delivery.warehouse_id,
            "delivery_state": delivery.state.value,
        }
    return data
