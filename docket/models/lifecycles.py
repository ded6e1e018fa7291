"""The order and delivery lifecycles, declared once as tables.

Three readers use these tables: the workflow (which moves are legal now), the update validators
(refuse early, naming the allowed triggers) and the store's guarded write (compare-and-set on the
current state). The `transitions` Machine holds no model and runs no callbacks: it is the table.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from enum import StrEnum
from typing import Any, Generic, TypeVar

from transitions import Machine

from docket.models.errors import IllegalTransition


class OrderState(StrEnum):
    pending = "pending"
    waiting_confirmation = "waiting_confirmation"
    waiting_payment = "waiting_payment"
    in_progress = "in_progress"
    partially_shipped = "partially_shipped"
    completed = "completed"
    cancelled = "cancelled"
    cancelled_waiting_payment = "cancelled_waiting_payment"
    returned = "returned"
    returned_waiting_payment = "returned_waiting_payment"
    rejected = "rejected"


class DeliveryState(StrEnum):
    new = "new"
    reserved = "reserved"
    wait_allocation = "wait_allocation"
    wait_date = "wait_date"
    wait_inventory = "wait_inventory"
    allocated = "allocated"
    packing = "packing"
    ready = "ready"
    ready_waiting_payment = "ready_waiting_payment"
    shipping = "shipping"
    shipping_waiting_payment = "shipping_waiting_payment"
    shipped = "shipped"
    reservation_voided = "reservation_voided"
    deallocated = "deallocated"
    returned = "returned"


_O = OrderState
_OPEN_UNSHIPPED = [_O.pending, _O.waiting_confirmation, _O.waiting_payment, _O.in_progress]

ORDER_TRANSITIONS: list[dict[str, object]] = [
    {"trigger": "reject", "source": _O.pending, "dest": _O.rejected},
    {"trigger": "await_confirmation", "source": _O.pending, "dest": _O.waiting_confirmation},
    {"trigger": "await_payment", "source": _O.pending, "dest": _O.waiting_payment},
    # paid on delivery: the order goes ahead unpaid, and the money is collected as it is delivered
    {"trigger": "accept", "source": _O.pending, "dest": _O.in_progress},
    {"trigger": "confirm_payment", "source": _O.waiting_confirmation, "dest": _O.in_progress},
    {
        "trigger": "payment_received",
        "source": [_O.pending, _O.waiting_payment],
        "dest": _O.in_progress,
    },
    {"trigger": "ship_partially", "source": _O.in_progress, "dest": _O.partially_shipped},
    {"trigger": "complete", "source": [_O.in_progress, _O.partially_shipped], "dest": _O.completed},
    {"trigger": "cancel", "source": _OPEN_UNSHIPPED, "dest": _O.cancelled},
    {
        "trigger": "cancel_awaiting_refund",
        "source": _OPEN_UNSHIPPED,
        "dest": _O.cancelled_waiting_payment,
    },
    {"trigger": "refund_cancelled", "source": _O.cancelled_waiting_payment, "dest": _O.cancelled},
    # goods come back once a delivery is on its way: delivered, or brought back by the carrier
    # (refused at the door, undeliverable) while the order is still in progress
    {
        "trigger": "return_goods",
        "source": [_O.in_progress, _O.partially_shipped, _O.completed],
        "dest": _O.returned,
    },
    {
        "trigger": "return_awaiting_refund",
        "source": [_O.in_progress, _O.partially_shipped, _O.completed],
        "dest": _O.returned_waiting_payment,
    },
    {"trigger": "refund_returned", "source": _O.returned_waiting_payment, "dest": _O.returned},
]
ORDER_FINAL = frozenset({_O.completed, _O.cancelled, _O.returned, _O.rejected})

_D = DeliveryState
_WAITING = [_D.reserved, _D.wait_allocation, _D.wait_date, _D.wait_inventory]
_ALLOCATED = [_D.allocated, _D.packing, _D.ready, _D.ready_waiting_payment]

DELIVERY_TRANSITIONS: list[dict[str, object]] = [
    {"trigger": "reserve", "source": _D.new, "dest": _D.reserved},
    {"trigger": "await_allocation", "source": _D.reserved, "dest": _D.wait_allocation},
    {"trigger": "await_date", "source": _D.reserved, "dest": _D.wait_date},
    {
        "trigger": "await_inventory",
        "source": [_D.reserved, _D.wait_date],
        "dest": _D.wait_inventory,
    },
    {
        "trigger": "allocate",
        "source": [_D.wait_allocation, _D.wait_date, _D.wait_inventory],
        "dest": _D.allocated,
    },
    {"trigger": "release_digital", "source": _D.reserved, "dest": _D.shipping},
    {"trigger": "pack", "source": _D.allocated, "dest": _D.packing},
    {"trigger": "mark_ready", "source": _D.packing, "dest": _D.ready},
    {"trigger": "ship", "source": _D.ready, "dest": _D.shipping},
    {"trigger": "hold_for_payment", "source": _D.ready, "dest": _D.ready_waiting_payment},
    {"trigger": "payment_captured", "source": _D.ready_waiting_payment, "dest": _D.shipping},
    {"trigger": "ship_awaiting_payment", "source": _D.ready, "dest": _D.shipping_waiting_payment},
    {
        "trigger": "deliver",
        "source": [_D.shipping, _D.shipping_waiting_payment],
        "dest": _D.shipped,
    },
    {"trigger": "void", "source": [_D.new, *_WAITING], "dest": _D.reservation_voided},
    {"trigger": "deallocate", "source": _ALLOCATED, "dest": _D.deallocated},
    {
        "trigger": "return_goods",
        "source": [_D.shipping, _D.shipping_waiting_payment, _D.shipped],
        "dest": _D.returned,
    },
]
DELIVERY_FINAL = frozenset({_D.shipped, _D.reservation_voided, _D.deallocated, _D.returned})

# The delivery moves an operator makes by hand; every other delivery move follows from payment,
# dates and stock, and is made by the workflow.
OPERATOR_DELIVERY_TRIGGERS = ("pack", "mark_ready", "ship", "deliver")
# What a refusal offers: the moves an operator can ask for from a state, by the name they ask with.
# A trigger the workflow picks for them (cancel_awaiting_refund when money was taken) is offered as
# the move that leads to it; the moves the workflow makes by itself are not offered.
ORDER_BY_HAND: dict[str, tuple[str, ...]] = {
    "confirm_payment": ("confirm_payment",),
    "cancel": ("cancel",),
    "cancel_awaiting_refund": ("cancel",),
    "return_goods": ("return_goods",),
    "return_awaiting_refund": ("return_goods",),
    "refund_cancelled": ("record_refund", "retry_refund"),
    "refund_returned": ("record_refund", "retry_refund"),
}
DELIVERY_BY_HAND: dict[str, tuple[str, ...]] = {t: (t,) for t in OPERATOR_DELIVERY_TRIGGERS}
# A delivery in one of these states is on its way: it can no longer be cancelled, only returned
# (delivered, or brought back by the carrier).
ON_ITS_WAY = frozenset({_D.shipping, _D.shipping_waiting_payment, _D.shipped})


def why_not_cancel(order_id: str, deliveries: Iterable[Any]) -> str | None:
    """Why an order cannot be cancelled because a delivery is on its way (None if none is), said
    before the order table's refusal: `partially_shipped: cannot cancel` does not say what to do."""
    deliveries = list(deliveries)
    on_its_way = [d for d in deliveries if d.state in ON_ITS_WAY]
    if not on_its_way:
        return None
    listed = ", ".join(f"delivery {d.delivery_no} is {d.state.value}" for d in on_its_way)
    rest = [d for d in deliveries if d.state not in ON_ITS_WAY and d.state not in DELIVERY_FINAL]
    also = " (which also withdraws what has not shipped)" if rest else ""
    return f"order {order_id} cannot be cancelled: {listed}; take it back as a return{also}"


def ruled_out(deliveries: Iterable[Any]) -> frozenset[str]:
    """The order moves its table allows that its deliveries rule out, so that a refusal does not
    offer them: cancel while a delivery is on its way, a return while none is."""
    on_its_way = any(d.state in ON_ITS_WAY for d in deliveries)
    return frozenset({"cancel"} if on_its_way else {"return_goods"})


def why_not_return(order_id: str, deliveries: Iterable[Any]) -> str | None:
    """Why an order the table would let return has nothing to return (None if it has): an order in
    progress with no delivery on its way is cancelled, not returned."""
    if any(d.state in ON_ITS_WAY for d in deliveries):
        return None
    return f"order {order_id} has nothing on its way to take back: cancel it instead"


S = TypeVar("S", bound=StrEnum)


class Lifecycle(Generic[S]):
    """A state table loaded into a `transitions` Machine (no model, no auto transitions)."""

    def __init__(
        self,
        name: str,
        states: type[S],
        table: list[dict[str, object]],
        final: Iterable[S],
        by_hand: dict[str, tuple[str, ...]],
    ):
        self.name = name
        self.states = states
        self.table = table
        self.final = frozenset(final)
        self.by_hand = by_hand
        self._machine = Machine(
            model=None, states=list(states), transitions=table, initial=None, auto_transitions=False
        )

    def allowed(self, state: S) -> list[str]:
        """Triggers legal from `state`, in table order."""
        return [t for t in self._triggers_in_order() if self._machine.get_transitions(t, state.value)]

    def allowed_by_hand(self, state: S, ruled_out: Collection[str] = ()) -> list[str]:
        """The moves an operator can ask for from `state`, in table order, but those `ruled_out`."""
        moves = (move for t in self.allowed(state) for move in self.by_hand.get(t, ()))
        return [move for move in dict.fromkeys(moves) if move not in ruled_out]

    def dest(self, state: S, trigger: str, ruled_out: Collection[str] = ()) -> S:
        """Where `trigger` leads from `state`; if nowhere, IllegalTransition naming the moves an
        operator can ask for from here (those the order's facts rule out left unsaid)."""
        found = self._machine.get_transitions(trigger, state.value)
        if not found:
            allowed = self.allowed_by_hand(state, ruled_out)
            raise IllegalTransition.refusing(
                self.name, state.value, trigger, allowed, final=state in self.final
            )
        return self.states(str(found[0].dest))

    def edges(self) -> list[tuple[S, str, S]]:
        return [
            (self.states(t.source), trigger, self.states(str(t.dest)))
            for trigger, event in self._machine.events.items()
            for transitions in event.transitions.values()
            for t in transitions
        ]

    def _triggers_in_order(self) -> list[str]:
        return list(dict.fromkeys(str(row["trigger"]) for row in self.table))


ORDER = Lifecycle("order", OrderState, ORDER_TRANSITIONS, ORDER_FINAL, ORDER_BY_HAND)
DELIVERY = Lifecycle("delivery", DeliveryState, DELIVERY_TRANSITIONS, DELIVERY_FINAL, DELIVERY_BY_HAND)
