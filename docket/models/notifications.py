"""Which move tells whom what: data beside the lifecycle tables (DESIGN section 6).

Keys are (lifecycle, trigger); values are (recipient kind, template key). The store writes one
outbox row per pair and recipient address in the move's own transaction; the template of a row is
templates/<recipient kind>/<template key>.j2.

Two payment facts tell people something without moving a state (a declined payment, a refund the
gateway refused): they are listed under the `payment` lifecycle in PAYMENT_FACTS, and the payments
work records them.
"""

from __future__ import annotations

from enum import StrEnum


class Recipient(StrEnum):
    customer = "customer"
    shop_admin = "shop_admin"
    fulfilment_centre = "fulfilment_centre"


C, A, F = Recipient.customer, Recipient.shop_admin, Recipient.fulfilment_centre

PAYMENT_FACTS = ("payment_failed", "refund_failed")

NOTIFY: dict[tuple[str, str], list[tuple[Recipient, str]]] = {
    ("order", "place"): [(C, "order_received"), (A, "new_order")],
    ("order", "await_confirmation"): [(A, "order_awaiting_confirmation")],
    ("order", "confirm_payment"): [(C, "order_confirmed"), (A, "payment_confirmed")],
    ("order", "payment_received"): [(C, "payment_received"), (A, "payment_confirmed")],
    ("order", "complete"): [(C, "order_shipping_completed")],
    ("order", "cancel"): [(C, "order_cancelled"), (A, "order_cancelled")],
    ("order", "cancel_awaiting_refund"): [(C, "order_cancelled"), (A, "order_cancelled")],
    ("order", "refund_cancelled"): [(C, "refund_made")],
    ("order", "return_goods"): [(C, "order_returned"), (A, "order_returned")],
    ("order", "return_awaiting_refund"): [(C, "order_returned"), (A, "order_returned")],
    ("order", "refund_returned"): [(C, "refund_made")],
    ("delivery", "allocate"): [(A, "delivery_allocated"), (F, "fulfilment_new_order")],
    ("delivery", "await_inventory"): [(A, "stock_cannot_be_allocated")],
    ("delivery", "pack"): [(A, "delivery_packing")],
    ("delivery", "mark_ready"): [(C, "delivery_ready"), (A, "delivery_ready")],
    ("delivery", "ship"): [(C, "delivery_shipped"), (A, "delivery_shipping")],
    ("delivery", "payment_captured"): [(C, "delivery_shipped"), (A, "delivery_shipping")],
    ("delivery", "ship_awaiting_payment"): [
        (C, "delivery_shipped"),
        (A, "delivery_shipping_awaiting_payment"),
    ],
    ("delivery", "release_digital"): [(C, "delivery_shipped")],
    ("payment", "payment_failed"): [(A, "payment_failed")],
    ("payment", "refund_failed"): [(A, "refund_failed")],
}

# A mail that could not be delivered for good (5xx, an invalid address, a template that does not
# render) is reported to the shop's admins once, with this template.
MAIL_FAILED = (A, "mail_failed")


def notifications_for(lifecycle: str, trigger: str) -> list[tuple[Recipient, str]]:
    return NOTIFY.get((lifecycle, trigger), [])


def template_name(kind: str, key: str) -> str:
    return f"{kind}/{key}.j2"


def every_template() -> set[tuple[Recipient, str]]:
    return {pair for pairs in NOTIFY.values() for pair in pairs} | {MAIL_FAILED}
