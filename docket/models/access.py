"""Who may do what, and in which shops (DESIGN section 4)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from docket.models.errors import Forbidden


class Role(StrEnum):
    admin = "admin"
    shop_admin = "shop_admin"
    call_centre = "call_centre"
    call_centre_process = "call_centre_process"
    call_centre_confirm = "call_centre_confirm"
    storefront = "storefront"


class Action(StrEnum):
    read_orders = "read orders"
    place_order = "place orders"
    confirm_payment = "confirm payments"
    process_delivery = "pack and ship deliveries"
    cancel_order = "cancel orders"
    return_order = "take returns"
    manage_stock = "receive and adjust stock"
    read_stock = "read stock"
    retry_mail = "retry mail"
    record_refund = "record manual refunds"
    replay_callbacks = "replay payment callbacks"
    save_customers = "register and change customers"
    find_customers = "search customers"


_ALL = frozenset(Action)
GRANTS: dict[Role, frozenset[Action]] = {
    Role.admin: _ALL,
    Role.shop_admin: _ALL,
    Role.call_centre: frozenset(
        {
            Action.read_orders,
            Action.place_order,
            Action.read_stock,
            Action.save_customers,
            Action.find_customers,
        }
    ),
    Role.call_centre_process: frozenset(
        {
            Action.read_orders,
            Action.process_delivery,
            Action.cancel_order,
            Action.read_stock,
            Action.retry_mail,
            Action.find_customers,
        }
    ),
    Role.call_centre_confirm: frozenset(
        {
            Action.read_orders,
            Action.confirm_payment,
            Action.return_order,
            Action.record_refund,
            Action.find_customers,
        }
    ),
    Role.storefront: frozenset({Action.place_order, Action.read_orders, Action.save_customers}),
}
DELIVERY_TRIGGER_ACTION = {
    "pack": Action.process_delivery,
    "mark_ready": Action.process_delivery,
    "ship": Action.process_delivery,
    "deliver": Action.process_delivery,
}


@dataclass(frozen=True)
class Operator:
    operator_id: str
    name: str
    roles: frozenset[Role]
    shops: frozenset[str]

    @property
    def all_shops(self) -> bool:
        return Role.admin in self.roles

    def shops_seen(self) -> set[str] | None:
        """The shops whose orders this operator sees; None: every shop."""
        return None if self.all_shops else set(self.shops)

    def sees_shop(self, shop_id: str) -> bool:
        return self.all_shops or shop_id in self.shops

    def may(self, action: Action) -> bool:
        return any(action in GRANTS[role] for role in self.roles)

    def require(self, action: Action, shop_id: str | None = None) -> None:
        """Raise Forbidden, saying why, unless this operator may do `action` in `shop_id`."""
        if not self.may(action):
            roles = ", ".join(sorted(self.roles)) or "no role"
            raise Forbidden(f"operator {self.operator_id} ({roles}) may not {action.value}")
        if shop_id is not None and not self.sees_shop(shop_id):
            raise Forbidden(f"operator {self.operator_id} does not work for shop {shop_id}")
