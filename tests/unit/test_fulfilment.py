"""What a delivery does on its own once payment, its date and its stock allow."""

from __future__ import annotations

from docket.models.fulfilment import automatic_triggers
from docket.models.lifecycles import DeliveryState as D
from docket.models.schemas import DeliveryGroup as G


def test_nothing_moves_before_payment() -> None:
    assert automatic_triggers(G.standard, D.reserved, paid=False, released=True, fully_reserved=True) == []


def test_a_paid_standard_delivery_is_allocated_at_once() -> None:
    assert automatic_triggers(G.standard, D.reserved, paid=True, released=True, fully_reserved=True) == [
        "await_allocation",
        "allocate",
    ]


def test_a_back_order_waits_for_inventory_until_whole() -> None:
    assert automatic_triggers(G.backorder, D.reserved, paid=True, released=True, fully_reserved=False) == [
        "await_inventory"
    ]
    assert automatic_triggers(
        G.backorder, D.wait_inventory, paid=True, released=True, fully_reserved=True
    ) == ["allocate"]


def test_a_preorder_waits_for_its_date_then_for_stock() -> None:
    assert automatic_triggers(G.preorder, D.reserved, paid=True, released=False, fully_reserved=True) == [
        "await_date"
    ]
    assert automatic_triggers(G.preorder, D.wait_date, paid=True, released=True, fully_reserved=False) == [
        "await_inventory"
    ]
    assert automatic_triggers(G.preorder, D.wait_date, paid=True, released=True, fully_reserved=True) == [
        "allocate"
    ]


def test_a_digital_delivery_is_shipped_as_soon_as_it_is_paid() -> None:
    assert automatic_triggers(G.digital, D.reserved, paid=True, released=True, fully_reserved=True) == [
        "release_digital",
        "deliver",
    ]


def test_delivered_goods_are_left_alone() -> None:
    assert automatic_triggers(G.standard, D.packing, paid=True, released=True, fully_reserved=True) == []
