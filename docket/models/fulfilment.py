"""What a delivery does next on its own, once the facts allow: payment, its date, its stock.

Pure: the store reads the facts inside the move's transaction and applies the triggers returned here
through the guarded write path.
"""

from __future__ import annotations

import datetime as dt

from docket.models.lifecycles import DeliveryState as D
from docket.models.schemas import DeliveryGroup


def automatic_triggers(
    group: DeliveryGroup,
    state: D,
    *,
    paid: bool,
    released: bool,
    fully_reserved: bool,
) -> list[str]:
    """The chain of triggers a delivery takes now, in order (empty when it must keep waiting).

    `released` is whether its release date (if any) has come; `fully_reserved` whether every line
    has all its units reserved.
    """
    if not paid or state not in (D.reserved, D.wait_allocation, D.wait_date, D.wait_inventory):
        return []
    if group is DeliveryGroup.digital:
        return ["release_digital", "deliver"] if state is D.reserved else []
    chain: list[str] = []
    if state is D.reserved:
        if group in (DeliveryGroup.preorder, DeliveryGroup.mixed):
            chain.append("await_date")
            state = D.wait_date
        elif group is DeliveryGroup.backorder or not fully_reserved:
            chain.append("await_inventory")
            state = D.wait_inventory
        else:
            chain.append("await_allocation")
            state = D.wait_allocation
    if state is D.wait_date:
        if not released:
            return chain
        if not fully_reserved:
            return [*chain, "await_inventory"]
        return [*chain, "allocate"]
    if fully_reserved:
        chain.append("allocate")
    return chain


def release_moment(release_date: dt.date | None, tz: dt.tzinfo) -> dt.datetime | None:
    """A pre-order is released at midnight of its release date in the shop's time zone."""
    if release_date is None:
        return None
    return dt.datetime.combine(release_date, dt.time(0), tzinfo=tz).astimezone(dt.UTC)
