"""How an order's lines are split into deliveries (DESIGN section 3, delivery groups).

Pure: given the products, the shop's warehouses in order of preference and what each has available,
decide each line's group and warehouse and how much it reserves now. The store calls this inside the
transaction that holds the stock rows, so the availability it sees is the availability it reserves.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from docket.models.errors import OrderRejected
from docket.models.schemas import DeliveryGroup


@dataclass(frozen=True)
class ProductFacts:
    sku: str
    digital: bool
    online: bool
    backorder_allowed: bool
    release_date: dt.date | None


@dataclass(frozen=True)
class LineRequest:
    line_no: int
    sku: str
    quantity: int


@dataclass
class PlannedLine:
    line_no: int
    sku: str
    quantity: int
    reserve: int


@dataclass
class PlannedDelivery:
    group: DeliveryGroup
    warehouse_id: str | None
    release_date: dt.date | None = None
    lines: list[PlannedLine] = field(default_factory=list)


def split_order(
    lines: list[LineRequest],
    products: dict[str, ProductFacts],
    warehouses: list[str],
    available: dict[tuple[str, str], int],
    today: dt.date,
    single_parcel: bool,
) -> list[PlannedDelivery]:
    """Plan the deliveries of an order, or raise OrderRejected naming the SKU that cannot be taken."""
    left = dict(available)
    placed: list[tuple[DeliveryGroup, str | None, dt.date | None, PlannedLine]] = []
    for line in lines:
        product = products[line.sku]
        if not product.online:
            raise OrderRejected(f"{line.sku} is offline and cannot be ordered")
        if product.digital:
            placed.append(
                (
                    DeliveryGroup.digital,
                    None,
                    None,
                    PlannedLine(line.line_no, line.sku, line.quantity, 0),
                )
            )
            continue
        if not warehouses:
            raise OrderRejected(f"{line.sku}: the shop ships from no warehouse")
        preorder = product.release_date is not None and product.release_date > today
        full = next((w for w in warehouses if left.get((w, line.sku), 0) >= line.quantity), None)
        if full is not None and not preorder:
            group, warehouse, take = DeliveryGroup.standard, full, line.quantity
        elif preorder or product.backorder_allowed:
            # The warehouse with most on the shelf; ties go to the shop's preferred one.
            warehouse = full or max(warehouses, key=lambda w: left.get((w, line.sku), 0))
            take = min(line.quantity, max(left.get((warehouse, line.sku), 0), 0))
            group = DeliveryGroup.preorder if preorder else DeliveryGroup.backorder
        else:
            have = max((left.get((w, line.sku), 0) for w in warehouses), default=0)
            raise OrderRejected(
                f"{line.sku}: {line.quantity} ordered, {max(have, 0)} available in any one warehouse, "
                "and the product cannot be back-ordered"
            )
        left[(warehouse, line.sku)] = left.get((warehouse, line.sku), 0) - take
        release = product.release_date if preorder else None
        placed.append((group, warehouse, release, PlannedLine(line.line_no, line.sku, line.quantity, take)))

    deliveries: dict[tuple[DeliveryGroup, str | None], PlannedDelivery] = {}
    for group, ships_from, release, planned in placed:
        if single_parcel and group is not DeliveryGroup.digital:
            group = DeliveryGroup.mixed
        delivery = deliveries.setdefault((group, ships_from), PlannedDelivery(group, ships_from))
        if release is not None and (delivery.release_date is None or release > delivery.release_date):
            delivery.release_date = release
        delivery.lines.append(planned)
    order = list(DeliveryGroup)
    return sorted(deliveries.values(), key=lambda d: (order.index(d.group), d.warehouse_id or ""))
