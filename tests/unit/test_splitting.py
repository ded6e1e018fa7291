"""How lines become deliveries D1-D5."""

from __future__ import annotations

import datetime as dt

import pytest

from docket.models.errors import OrderRejected
from docket.models.schemas import DeliveryGroup as G
from docket.models.splitting import LineRequest, ProductFacts, split_order

TODAY = dt.date(2026, 11, 23)
PRODUCTS = {
    "W": ProductFacts("W", digital=False, online=True, backorder_allowed=False, release_date=None),
    "B": ProductFacts("B", digital=False, online=True, backorder_allowed=True, release_date=None),
    "P": ProductFacts(
        "P", digital=False, online=True, backorder_allowed=False, release_date=dt.date(2027, 1, 1)
    ),
    "E": ProductFacts("E", digital=True, online=True, backorder_allowed=False, release_date=None),
    "X": ProductFacts("X", digital=False, online=False, backorder_allowed=True, release_date=None),
}


def split(lines: list[tuple[str, int]], available: dict[tuple[str, str], int], single_parcel: bool = False):  # type: ignore[no-untyped-def]
    requests = [LineRequest(no, sku, qty) for no, (sku, qty) in enumerate(lines, start=1)]
    return split_order(requests, PRODUCTS, ["north", "south"], available, TODAY, single_parcel)


def test_lines_in_stock_ship_as_standard_deliveries_from_the_preferred_warehouse() -> None:
    [d] = split([("W", 2)], {("north", "W"): 5, ("south", "W"): 5})
    assert (d.group, d.warehouse_id, d.lines[0].reserve) == (G.standard, "north", 2)


def test_a_line_goes_to_the_next_warehouse_when_the_first_is_short() -> None:
    [d] = split([("W", 4)], {("north", "W"): 3, ("south", "W"): 5})
    assert (d.group, d.warehouse_id) == (G.standard, "south")


def test_a_back_orderable_line_reserves_what_there_is_and_waits_for_the_rest() -> None:
    [d] = split([("B", 5)], {("north", "B"): 1, ("south", "B"): 2})
    assert (d.group, d.warehouse_id, d.lines[0].reserve) == (G.backorder, "south", 2)


def test_an_unreleased_product_is_a_preorder_with_its_release_date() -> None:
    [d] = split([("P", 1)], {})
    assert (d.group, d.release_date, d.lines[0].reserve) == (G.preorder, dt.date(2027, 1, 1), 0)


def test_digital_goods_need_no_warehouse() -> None:
    [d] = split([("E", 1)], {})
    assert (d.group, d.warehouse_id) == (G.digital, None)


def test_an_order_is_split_by_kind_and_warehouse() -> None:
    deliveries = split([("W", 1), ("B", 3), ("P", 1), ("E", 1)], {("north", "W"): 1, ("north", "B"): 1})
    assert [(d.group, d.warehouse_id) for d in deliveries] == [
        (G.standard, "north"),
        (G.preorder, "north"),
        (G.backorder, "north"),
        (G.digital, None),
    ]


def test_single_parcel_merges_the_physical_groups_of_a_warehouse_and_keeps_the_latest_date() -> None:
    deliveries = split([("W", 1), ("B", 3), ("P", 1), ("E", 1)], {("north", "W"): 1}, single_parcel=True)
    assert [(d.group, d.warehouse_id, d.release_date) for d in deliveries] == [
        (G.digital, None, None),
        (G.mixed, "north", dt.date(2027, 1, 1)),
    ]
    assert sorted(line.sku for line in deliveries[1].lines) == ["B", "P", "W"]


def test_two_lines_of_one_sku_cannot_both_take_the_same_units() -> None:
    with pytest.raises(OrderRejected, match="W: 2 ordered, 1 available"):
        split([("W", 2), ("W", 2)], {("north", "W"): 3})


def test_a_short_line_that_cannot_be_back_ordered_rejects_the_order_naming_the_sku() -> None:
    with pytest.raises(
        OrderRejected,
        match="W: 4 ordered, 3 available in any one warehouse, and the product cannot be back-ordered",
    ):
        split([("B", 1), ("W", 4)], {("north", "W"): 3})


def test_an_offline_product_rejects_the_order() -> None:
    with pytest.raises(OrderRejected, match="X is offline"):
        split([("X", 1)], {("north", "X"): 9})
