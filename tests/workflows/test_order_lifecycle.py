"""Orders driven through their lifecycles on real Temporal (dev server) and a real store."""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from docket.models.errors import Forbidden, IllegalTransition, InvalidInput, NotFound, OrderRejected, Refused
from docket.models.lifecycles import DeliveryState as D
from docket.models.lifecycles import OrderState
from docket.models.schemas import (
    AdjustStock,
    CancelOrder,
    DeliveryGroup,
    OrderRecord,
    ReceiveStock,
    RecordRefund,
    ReturnOrder,
)
from docket.store.tables import AuditRow, StockMovement
from docket.store.tables import Shop as ShopRow
from tests.conftest import Shop, eventually, keep_history
from tests.orders import confirm, move, place, view_of
from tests.smtp import SmtpServer


async def test_a_standard_order_is_reserved_confirmed_allocated_packed_shipped_and_completed(
    shop: Shop,
) -> None:
    alice = await shop.op("alice")

    placed = await shop.docket.place_order(alice, place("o-1", ("WIDGET", 3)))
    assert placed.state is OrderState.waiting_confirmation
    [delivery] = placed.deliveries
    assert (delivery.group, delivery.warehouse_id, delivery.state) == (
        DeliveryGroup.standard,
        "north",
        D.reserved,
    )

    confirmed = await confirm(shop, "o-1")
    assert confirmed.state is OrderState.in_progress
    assert confirmed.deliveries[0].state is D.allocated

    view = await move(shop, "o-1", 1, "pack", "mark_ready", "ship", "deliver")
    assert view.state is OrderState.completed
    assert view.deliveries[0].state is D.shipped
    assert (await shop.docket.verify_stock(alice)).ok
    await keep_history(shop, "o-1", "completed_order")


async def test_an_order_becomes_partially_shipped_then_completed_as_its_deliveries_ship(shop: Shop) -> None:
    await shop.docket.place_order(await shop.op("alice"), place("o-1", ("WIDGET", 1), ("FUTURE", 1)))
    await confirm(shop, "o-1")
    view = await move(shop, "o-1", 1, "pack", "mark_ready", "ship", "deliver")
    assert view.state is OrderState.partially_shipped
    assert view.deliveries[1].state is D.wait_date


async def test_cancelling_a_partially_shipped_order_says_to_take_it_back_as_a_return(shop: Shop) -> None:
    alice = await shop.op("alice")
    await shop.docket.place_order(alice, place("o-1", ("WIDGET", 1), ("FUTURE", 1)))
    await confirm(shop, "o-1")
    await move(shop, "o-1", 1, "pack", "mark_ready", "ship", "deliver")
    before = settled(await shop.docket.order_record(alice, "o-1"))

    with pytest.raises(
        Refused,
        match=r"order o-1 cannot be cancelled: delivery 1 is shipped; take it back as a return "
        r"\(which also withdraws what has not shipped\)",
    ):
        await shop.docket.cancel_order(alice, CancelOrder(order_id="o-1", operator_id="alice", reason="r"))
    assert settled(await shop.docket.order_record(alice, "o-1")) == before

    returned = await shop.docket.return_order(
        alice, ReturnOrder(order_id="o-1", operator_id="alice", note="the rest is not wanted")
    )
    # paid offline: waiting for the money to go back by hand; the pre-order no longer holds stock
    assert returned.state is OrderState.returned_waiting_payment
    assert [d.state for d in returned.deliveries] == [D.returned, D.reservation_voided]


async def test_placing_the_same_order_twice_returns_the_first_result_and_reserves_once(shop: Shop) -> None:
    alice = await shop.op("alice")
    first = await shop.docket.place_order(alice, place("o-1", ("WIDGET", 3)))
    again = await shop.docket.place_order(alice, place("o-1", ("WIDGET", 3)))
    assert again == first
    reservations = await shop.docket.read(
        lambda s: s.scalar(
            select(func.count()).select_from(StockMovement).where(StockMovement.kind == "reserve")
        )
    )
    assert reservations == 1


async def test_an_order_id_taken_by_another_order_is_refused_naming_what_differs(shop: Shop) -> None:
    alice, root = await shop.op("alice"), await shop.op("root")
    first = await shop.docket.place_order(alice, place("o-1", ("WIDGET", 3)))

    with pytest.raises(InvalidInput, match="already taken by an order that differs in lines"):
        await shop.docket.place_order(alice, place("o-1", ("WIDGET", 4)))
    with pytest.raises(InvalidInput, match="differs in shop, lines"):
        await shop.docket.place_order(root, place("o-1", ("GADGET", 1), shop_id="beta"))

    assert await view_of(shop, "o-1") == first  # nothing of the first order changed
    levels = {
        (lv.warehouse_id, lv.sku): lv.reserved for lv in await shop.docket.stock_levels(alice, None, None)
    }
    assert sum(levels.values()) == 3


async def test_two_different_orders_sent_at_once_under_one_new_id_place_one_and_refuse_the_other(
    shop: Shop,
) -> None:
    alice = await shop.op("alice")
    results = await asyncio.gather(
        *(shop.docket.place_order(alice, place("o-1", ("WIDGET", n))) for n in (1, 2)), return_exceptions=True
    )
    placed = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(placed) == 1 and len(refused) == 1
    assert isinstance(refused[0], InvalidInput) and "differs in lines" in str(refused[0])
    assert placed[0] == await view_of(shop, "o-1")


async def test_an_order_that_cannot_be_served_is_rejected_naming_the_sku_and_reserves_nothing(
    shop: Shop,
) -> None:
    alice = await shop.op("alice")
    with pytest.raises(OrderRejected, match="WIDGET: 11 ordered, 10 available"):
        await shop.docket.place_order(alice, place("o-1", ("GADGET", 1), ("WIDGET", 11)))
    with pytest.raises(OrderRejected, match="RETIRED is offline"):
        await shop.docket.place_order(alice, place("o-2", ("RETIRED", 1)))
    levels = await shop.docket.stock_levels(alice, None, None)
    assert all(level.reserved == 0 for level in levels)
    with pytest.raises(OrderRejected, match="WIDGET: 11 ordered"):  # the same order: the same answer
        await shop.docket.place_order(alice, place("o-1", ("GADGET", 1), ("WIDGET", 11)))
    with pytest.raises(InvalidInput, match="order id o-1 is already taken by an order that differs in lines"):
        await shop.docket.place_order(alice, place("o-1", ("GADGET", 1)))


async def test_unknown_shop_customer_or_sku_is_refused_before_anything_starts(shop: Shop) -> None:
    root = await shop.op("root")
    with pytest.raises(NotFound, match="unknown SKU NOPE"):
        await shop.docket.place_order(root, place("o-1", ("NOPE", 1)))
    with pytest.raises(NotFound, match="unknown shop gamma"):
        await shop.docket.place_order(root, place("o-1", ("WIDGET", 1), shop_id="gamma"))


async def test_a_back_order_waits_and_received_stock_wakes_the_oldest_first(shop: Shop) -> None:
    alice = await shop.op("alice")
    for n in (1, 2, 3):
        await shop.docket.place_order(alice, place(f"o-{n}", ("GADGET", 2)))
        await confirm(shop, f"o-{n}")
    assert [(await view_of(shop, f"o-{n}")).deliveries[0].state for n in (1, 2, 3)] == [
        D.allocated,
        D.wait_inventory,
        D.wait_inventory,
    ]
    [level] = await shop.docket.stock_levels(alice, "north", "GADGET")
    assert (level.available, level.backordered) == (0, 4)  # what the next receipts go to

    received = await shop.docket.change_stock(
        alice,
        ReceiveStock(reference="po-1", warehouse_id="north", sku="GADGET", quantity=3, operator_id="alice"),
    )
    assert [(w.order_id, w.delivery_no) for w in received.woken] == [("o-2", 1)]
    assert (received.level.reserved, received.level.backordered) == (3, 1)  # o-3 holds 1 of its 2
    assert [(p.order_id, p.reserved, p.short) for p in received.partly] == [("o-3", 1, 1)]

    async def o2_allocated():  # type: ignore[no-untyped-def]
        return (await view_of(shop, "o-2")).deliveries[0].state is D.allocated

    await eventually(o2_allocated)
    o3 = await view_of(shop, "o-3")
    assert (o3.deliveries[0].state, o3.deliveries[0].lines[0].reserved) == (D.wait_inventory, 1)

    again = await shop.docket.change_stock(
        alice,
        ReceiveStock(reference="po-1", warehouse_id="north", sku="GADGET", quantity=3, operator_id="alice"),
    )
    assert again.duplicate and again.level == received.level  # the same receipt twice counts once
    before = await shop.docket.stock_levels(alice, "north", "GADGET")
    for typo in (  # another change under a reference already recorded: refused, naming the first
        ReceiveStock(reference="po-1", warehouse_id="north", sku="GADGET", quantity=30, operator_id="alice"),
        ReceiveStock(reference="po-1", warehouse_id="north", sku="WIDGET", quantity=3, operator_id="alice"),
    ):
        with pytest.raises(
            InvalidInput,
            match=r"reference po-1 already recorded another stock change \(receive \+3 GADGET at north\)",
        ):
            await shop.docket.change_stock(alice, typo)
    assert await shop.docket.stock_levels(alice, "north", "GADGET") == before  # nothing more counted
    await move(shop, "o-2", 1, "pack", "mark_ready", "ship", "deliver")
    await keep_history(shop, "o-2", "back_ordered_order")


async def test_a_back_order_shown_allocated_can_be_packed_at_once_while_its_mail_still_goes_out(
    mailing_shop: Shop, smtp: SmtpServer
) -> None:
    shop = mailing_shop
    alice = await shop.op("alice")
    for n in (1, 2):
        await shop.docket.place_order(alice, place(f"o-{n}", ("GADGET", 2)))
        await confirm(shop, f"o-{n}")
    assert (await view_of(shop, "o-2")).deliveries[0].state is D.wait_inventory
    smtp.inbox.delay = 1.0  # the allocation's mail takes a while: its move is still in flight

    receipt = ReceiveStock(
        reference="po-9", warehouse_id="north", sku="GADGET", quantity=2, operator_id="alice"
    )
    await shop.docket.change_stock(alice, receipt)

    async def o2_allocated():  # type: ignore[no-untyped-def]
        return (await view_of(shop, "o-2")).deliveries[0].state is D.allocated

    await eventually(o2_allocated)  # what `docket order show` says
    await move(shop, "o-2", 1, "pack")  # not refused as still waiting for stock
    assert (await view_of(shop, "o-2")).deliveries[0].state is D.packing
    with pytest.raises(IllegalTransition, match="cannot pack"):  # the store still refuses what is illegal
        await move(shop, "o-2", 1, "pack")


async def test_a_digital_delivery_ships_as_soon_as_the_payment_is_confirmed(shop: Shop) -> None:
    await shop.docket.place_order(await shop.op("alice"), place("o-1", ("EBOOK", 1)))
    view = await confirm(shop, "o-1")
    assert (view.state, view.deliveries[0].state) == (OrderState.completed, D.shipped)


@pytest.mark.parametrize("shop", [{"gadget_on_hand": 0}], indirect=True)
async def test_a_single_parcel_shop_merges_physical_lines_into_one_mixed_delivery(shop: Shop) -> None:
    bob = await shop.op("bob")
    view = await shop.docket.place_order(
        bob, place("o-1", ("GADGET", 1), ("FUTURE", 1), ("EBOOK", 1), shop_id="beta")
    )
    assert [(d.group, d.warehouse_id) for d in view.deliveries] == [
        (DeliveryGroup.digital, None),
        (DeliveryGroup.mixed, "south"),
    ]
    view = await confirm(shop, "o-1", operator="bob")
    assert [d.state for d in view.deliveries] == [D.shipped, D.wait_date]


async def test_cancel_releases_reservations_and_credits_back_allocated_stock(shop: Shop) -> None:
    alice = await shop.op("alice")
    await shop.docket.place_order(alice, place("o-1", ("WIDGET", 3)))
    await shop.docket.place_order(alice, place("o-2", ("WIDGET", 2)))
    await confirm(shop, "o-2")
    await move(shop, "o-2", 1, "pack")

    one = await shop.docket.cancel_order(
        alice, CancelOrder(order_id="o-1", operator_id="alice", reason="customer called")
    )
    two = await shop.docket.cancel_order(
        alice, CancelOrder(order_id="o-2", operator_id="alice", reason="customer called")
    )

    assert (one.state, one.deliveries[0].state) == (OrderState.cancelled, D.reservation_voided)
    # o-2 was paid: it waits for its money to go back
    assert (two.state, two.deliveries[0].state) == (OrderState.cancelled_waiting_payment, D.deallocated)
    [level] = await shop.docket.stock_levels(alice, "north", "WIDGET")
    assert (level.on_hand, level.reserved) == (10, 0)
    assert (await shop.docket.verify_stock(alice)).ok
    refunded = await shop.docket.record_refund(
        await shop.op("conny"), RecordRefund(order_id="o-2", operator_id="conny", note="paid back in cash")
    )
    assert refunded.state is OrderState.cancelled
    await keep_history(shop, "o-2", "cancelled_order")


async def test_illegal_moves_are_refused_with_the_reason_and_change_nothing(shop: Shop) -> None:
    alice = await shop.op("alice")
    await shop.docket.place_order(alice, place("o-1", ("WIDGET", 1)))
    await confirm(shop, "o-1")
    before = settled(await shop.docket.order_record(alice, "o-1"))

    with pytest.raises(
        IllegalTransition, match="delivery 1 is allocated: cannot ship; allowed from here: pack"
    ):
        await move(shop, "o-1", 1, "ship")
    with pytest.raises(
        IllegalTransition,
        match=r"order o-1 is in_progress: cannot confirm_payment; allowed from here: cancel$",
    ):
        await confirm(shop, "o-1")
    with pytest.raises(Forbidden, match="bob does not work for shop alpha"):
        await move(shop, "o-1", 1, "pack", operator="bob")
    with pytest.raises(Forbidden, match=r"carol \(call_centre\) may not pack and ship deliveries"):
        await move(shop, "o-1", 1, "pack", operator="carol")
    assert settled(await shop.docket.order_record(alice, "o-1")) == before

    await move(shop, "o-1", 1, "pack", "mark_ready", "ship")
    with pytest.raises(
        Refused, match="cannot be cancelled: delivery 1 is shipping; take it back as a return"
    ):
        await shop.docket.cancel_order(
            alice, CancelOrder(order_id="o-1", operator_id="alice", reason="too late")
        )
    # with a parcel on its way, a return is what is offered, not a cancel
    with pytest.raises(
        IllegalTransition,
        match=r"order o-1 is in_progress: cannot confirm_payment; allowed from here: return_goods$",
    ):
        await confirm(shop, "o-1")
    assert (await view_of(shop, "o-1")).deliveries[0].state is D.shipping


async def test_a_parcel_the_carrier_brings_back_is_returned_while_the_order_is_in_progress(
    shop: Shop,
) -> None:
    alice = await shop.op("alice")
    await shop.docket.place_order(alice, place("o-1", ("WIDGET", 1)))
    await confirm(shop, "o-1")
    before = settled(await shop.docket.order_record(alice, "o-1"))
    with pytest.raises(Refused, match="order o-1 has nothing on its way to take back: cancel it instead"):
        await shop.docket.return_order(alice, ReturnOrder(order_id="o-1", operator_id="alice"))
    assert settled(await shop.docket.order_record(alice, "o-1")) == before

    await move(shop, "o-1", 1, "pack", "mark_ready", "ship")
    returned = await shop.docket.return_order(
        alice, ReturnOrder(order_id="o-1", operator_id="alice", note="refused at the door")
    )
    # paid offline: waiting for the money to go back by hand
    assert (returned.state, returned.deliveries[0].state) == (OrderState.returned_waiting_payment, D.returned)
    history = (await shop.docket.order_record(alice, "o-1")).history
    assert ("delivery", "return_goods", "shipping", "returned", "refused at the door") in {
        (e.entity.split()[0], e.trigger, e.from_state, e.to_state, e.note) for e in history
    }

    # paid on delivery: a parcel that never reached the customer was never paid for
    await shop.docket.place_order(alice, place("o-2", ("WIDGET", 1), payment_flow="on_delivery"))
    await move(shop, "o-2", 1, "pack", "mark_ready", "ship")
    returned = await shop.docket.return_order(alice, ReturnOrder(order_id="o-2", operator_id="alice"))
    assert (returned.state, returned.deliveries[0].state) == (OrderState.returned, D.returned)
    assert (await shop.docket.order_record(alice, "o-2")).payments == []
    assert (await shop.docket.verify_stock(alice)).ok


@pytest.mark.parametrize("shop", [{"return_days": 30}], indirect=True)
async def test_a_return_marks_deliveries_returned_and_restocking_is_its_own_movement(shop: Shop) -> None:
    alice = await shop.op("alice")
    await shop.docket.place_order(alice, place("o-1", ("WIDGET", 2)))
    await confirm(shop, "o-1")
    await move(shop, "o-1", 1, "pack", "mark_ready", "ship", "deliver")

    conny = await shop.op("conny")
    view = await shop.docket.return_order(
        conny, ReturnOrder(order_id="o-1", operator_id="conny", note="parcel refused")
    )
    # paid offline: returned, and waiting for the money to go back by hand
    assert (view.state, view.deliveries[0].state) == (OrderState.returned_waiting_payment, D.returned)
    [level] = await shop.docket.stock_levels(alice, "north", "WIDGET")
    assert level.on_hand == 8  # not back on the shelf until someone puts it there
    refunded = await shop.docket.record_refund(
        conny, RecordRefund(order_id="o-1", operator_id="conny", note="refunded to card by hand")
    )
    assert refunded.state is OrderState.returned

    back = ReceiveStock(
        reference="rma-1",
        warehouse_id="north",
        sku="WIDGET",
        quantity=2,
        kind="return",
        order_id="o-1",
        operator_id="alice",
        note="both in mint condition",
    )
    assert (await shop.docket.change_stock(alice, back)).level.on_hand == 10
    record = await shop.docket.order_record(alice, "o-1")
    assert record.stock_movements[-1].kind == "return"
    assert record.stock_movements[-1].note == "both in mint condition"

    # no more back from an order than it sent out, and only from an order that is there
    third = back.model_copy(update={"reference": "rma-2", "quantity": 1})
    with pytest.raises(
        Refused, match="order o-1 sent out 2 WIDGET, 2 of them back on the shelf already: at most 0"
    ):
        await shop.docket.change_stock(alice, third)
    await shop.docket.place_order(alice, place("o-2", ("WIDGET", 1)))  # reserved, never sent
    with pytest.raises(Refused, match="order o-2 sent out 0 WIDGET"):
        await shop.docket.change_stock(alice, third.model_copy(update={"order_id": "o-2"}))
    with pytest.raises(NotFound, match="unknown order o-9"):
        await shop.docket.change_stock(alice, third.model_copy(update={"order_id": "o-9"}))
    bob = await shop.op("bob")  # beta's admin, at beta's warehouse: not alpha's order
    with pytest.raises(Forbidden, match="operator bob does not work for shop alpha"):
        await shop.docket.change_stock(
            bob, third.model_copy(update={"warehouse_id": "south", "operator_id": "bob"})
        )
    [level] = await shop.docket.stock_levels(alice, "north", "WIDGET")
    assert (level.on_hand, level.reserved) == (10, 1)  # nothing refused was counted
    assert (await shop.docket.change_stock(alice, back)).duplicate  # the first return, repeated: one result


async def test_every_move_is_audited_with_who_when_from_and_to(shop: Shop) -> None:
    await shop.docket.place_order(await shop.op("carol"), place("o-1", ("WIDGET", 1)))
    await confirm(shop, "o-1", operator="conny")
    record = await shop.docket.order_record(await shop.op("alice"), "o-1")
    assert [(h.entity, h.trigger, h.from_state, h.to_state, h.operator_id) for h in record.history] == [
        ("order", "place", None, "pending", "carol"),
        ("delivery 1", "reserve", "new", "reserved", "carol"),
        ("order", "await_confirmation", "pending", "waiting_confirmation", "carol"),
        ("order", "confirm_payment", "waiting_confirmation", "in_progress", "conny"),
        ("delivery 1", "await_allocation", "reserved", "wait_allocation", "conny"),
        ("delivery 1", "allocate", "wait_allocation", "allocated", "conny"),
    ]
    assert await shop.docket.read(lambda s: s.scalar(select(func.count()).select_from(AuditRow))) == 6


async def test_a_return_after_the_return_window_is_refused_with_the_reason(shop: Shop) -> None:
    # The test shops keep no return window: the workflow closes as the order completes.
    alice = await shop.op("alice")
    await shop.docket.place_order(alice, place("o-1", ("WIDGET", 1)))
    await confirm(shop, "o-1")
    await move(shop, "o-1", 1, "pack", "mark_ready", "ship", "deliver")
    await shop.client.get_workflow_handle(f"{shop.docket.workflow_id_prefix}order-o-1").result()

    with pytest.raises(Refused, match="order o-1 is completed and closed: nothing more can move"):
        await shop.docket.return_order(
            await shop.op("conny"), ReturnOrder(order_id="o-1", operator_id="conny")
        )


def settled(record: OrderRecord) -> tuple[object, ...]:
    """The record, less what mail delivery changes on its own time (a mail's state)."""
    mails = [(m.outbox_id, m.recipient, m.template_key) for m in record.notifications]
    return record.order, record.history, record.stock_movements, mails


async def test_cancelling_a_paid_order_waits_for_a_clerk_to_refund_it_by_hand(shop: Shop) -> None:
    alice, conny = await shop.op("alice"), await shop.op("conny")
    await shop.docket.place_order(alice, place("o-1", ("WIDGET", 2)))
    await confirm(shop, "o-1", operator="conny")

    cancelled = await shop.docket.cancel_order(
        alice, CancelOrder(order_id="o-1", operator_id="alice", reason="customer changed mind")
    )
    assert cancelled.state is OrderState.cancelled_waiting_payment
    record = await shop.docket.order_record(alice, "o-1")
    assert [(p.operation.value, p.amount, p.result.value) for p in record.payments] == [
        ("capture", Decimal("19.00"), "ok"),
        ("refund", Decimal("19.00"), "manual_required"),
    ]
    assert record.payment.status.value == "refund_pending"

    with pytest.raises(Forbidden, match="may not record manual refunds"):
        await shop.docket.record_refund(
            await shop.op("pat"), RecordRefund(order_id="o-1", operator_id="pat", note="x")
        )
    refunded = await shop.docket.record_refund(
        conny, RecordRefund(order_id="o-1", operator_id="conny", note="bank transfer back", reference="TX-9")
    )
    assert refunded.state is OrderState.cancelled
    record = await shop.docket.order_record(alice, "o-1")
    assert (record.payment.status.value, record.payment.captured, record.payment.refunded) == (
        "none",
        Decimal("19.00"),
        Decimal("19.00"),
    )
    assert record.payments[-1].reference == "TX-9" and record.payments[-1].note == "bank transfer back"
    assert ("ada@example.test", "refund_made") in {
        (n.recipient, n.template_key) for n in record.notifications
    }

    with pytest.raises(Refused, match="is cancelled and closed"):
        await shop.docket.record_refund(
            conny, RecordRefund(order_id="o-1", operator_id="conny", note="again")
        )


async def test_a_refund_is_refused_when_none_is_waiting(shop: Shop) -> None:
    alice = await shop.op("alice")
    await shop.docket.place_order(alice, place("o-1", ("WIDGET", 1)))
    with pytest.raises(Refused, match="waiting_confirmation: no refund is waiting to be made"):
        await shop.docket.record_refund(alice, RecordRefund(order_id="o-1", operator_id="alice", note="x"))
    cancelled = await shop.docket.cancel_order(
        alice, CancelOrder(order_id="o-1", operator_id="alice", reason="x")
    )
    assert cancelled.state is OrderState.cancelled, "nothing was paid: nothing to refund"


@pytest.mark.parametrize("shop", [{"return_days": 30}], indirect=True)
async def test_an_order_paid_on_delivery_goes_ahead_unpaid_and_is_paid_parcel_by_parcel(shop: Shop) -> None:
    alice = await shop.op("alice")
    placed = await shop.docket.place_order(
        alice, place("o-1", ("WIDGET", 2), ("GADGET", 1), payment_flow="on_delivery")
    )
    assert placed.state is OrderState.in_progress
    assert [d.state for d in placed.deliveries] == [D.allocated]

    shipped = await move(shop, "o-1", 1, "pack", "mark_ready", "ship")
    assert shipped.deliveries[0].state is D.shipping_waiting_payment
    assert (await shop.docket.order_record(alice, "o-1")).payment.status.value == "none"

    done = await move(shop, "o-1", 1, "deliver")
    assert (done.state, done.deliveries[0].state) == (OrderState.completed, D.shipped)
    record = await shop.docket.order_record(alice, "o-1")
    [collected] = record.payments
    assert (collected.operation.value, collected.amount, collected.delivery_no) == (
        "capture",
        Decimal("28.50"),
        1,
    )
    assert record.payment.status.value == "full"
    told = {(n.recipient, n.template_key) for n in record.notifications}
    assert ("admin@alpha.test", "delivery_shipping_awaiting_payment") in told


async def test_an_order_paid_on_delivery_cancelled_before_shipping_owes_nothing(shop: Shop) -> None:
    alice = await shop.op("alice")
    await shop.docket.place_order(alice, place("o-1", ("WIDGET", 2), payment_flow="on_delivery"))
    cancelled = await shop.docket.cancel_order(
        alice, CancelOrder(order_id="o-1", operator_id="alice", reason="x")
    )
    assert (cancelled.state, cancelled.deliveries[0].state) == (OrderState.cancelled, D.deallocated)
    assert (await shop.docket.order_record(alice, "o-1")).payments == []


async def test_an_auto_approved_invoice_is_authorized_at_placement_and_captured_at_dispatch(
    shop: Shop,
) -> None:
    with shop.sessions.begin() as s:  # the shop invoices: its gateway is the offline one
        s.execute(update(ShopRow).where(ShopRow.shop_id == "alpha").values(gateway="offline"))
    alice = await shop.op("alice")
    placed = await shop.docket.place_order(alice, place("o-1", ("WIDGET", 2), payment_flow="per_shipment"))
    assert placed.state is OrderState.in_progress
    await move(shop, "o-1", 1, "pack", "mark_ready", "ship")
    record = await shop.docket.order_record(alice, "o-1")
    assert [(p.gateway, p.operation.value, p.amount, p.result.value) for p in record.payments] == [
        ("offline", "authorize", Decimal("19.00"), "ok"),
        ("offline", "capture", Decimal("19.00"), "ok"),
    ]


async def test_a_card_flow_without_a_payment_token_is_refused_at_intake(shop: Shop) -> None:
    with pytest.raises(InvalidInput, match="prepayment through sandbox needs the customer's payment_token"):
        await shop.docket.place_order(
            await shop.op("alice"), place("o-1", ("WIDGET", 1), payment_flow="prepayment")
        )


async def test_digital_products_are_refused_under_pay_per_shipment_and_nothing_is_reserved(
    shop: Shop,
) -> None:
    alice = await shop.op("alice")
    cmd = place("o-1", ("WIDGET", 1), ("EBOOK", 1), payment_flow="per_shipment", payment_token="tok_ok")
    with pytest.raises(InvalidInput, match=r"digital products \(EBOOK\) need prepayment"):
        await shop.docket.place_order(alice, cmd)
    assert [level.reserved for level in await shop.docket.stock_levels(alice, None, "WIDGET")] == [0]


async def test_a_refused_stock_change_is_told_to_its_caller_and_logs_no_failure_in_the_worker(
    shop: Shop,
) -> None:

    seen: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = seen.append  # type: ignore[method-assign]
    log = logging.getLogger("temporalio.activity")
    log.addHandler(handler)
    try:
        too_many = AdjustStock(
            reference="count-1",
            warehouse_id="north",
            sku="WIDGET",
            delta=-2000,
            operator_id="alice",
            note="x",
        )
        with pytest.raises(Refused, match="cannot take 2000 off WIDGET at north"):
            await shop.docket.change_stock(await shop.op("alice"), too_many)
    finally:
        log.removeHandler(handler)
    assert [r for r in seen if r.levelno >= logging.WARNING] == []


async def test_a_warehouse_works_through_its_deliveries_oldest_order_first(shop: Shop) -> None:
    alice, bob = await shop.op("alice"), await shop.op("bob")
    for order_id in ("o-1", "a-2", "o-3"):  # placed in this order, not the order of their ids
        await shop.docket.place_order(alice, place(order_id, ("WIDGET", 1)))
    await confirm(shop, "a-2")
    await confirm(shop, "o-1")  # paid after a-2, but placed before it: packed first
    await confirm(shop, "o-3")
    await move(shop, "o-3", 1, "pack", "mark_ready", "ship", "deliver")

    to_pack = await shop.docket.list_deliveries(alice, warehouse_id="north", state=D.allocated)
    assert [(d.order_id, d.delivery_no) for d in to_pack.deliveries] == [("o-1", 1), ("a-2", 1)]
    assert to_pack.total == 2 and [line.sku for line in to_pack.deliveries[0].lines] == ["WIDGET"]

    await move(shop, "o-1", 1, "pack")
    open_ones = await shop.docket.list_deliveries(alice, warehouse_id="north")  # o-3 has ended
    assert [(d.order_id, d.state) for d in open_ones.deliveries] == [("o-1", D.packing), ("a-2", D.allocated)]
    shipped = await shop.docket.list_deliveries(alice, state=D.shipped)
    assert [d.order_id for d in shipped.deliveries] == ["o-3"]

    assert (await shop.docket.list_deliveries(bob)).total == 0  # another shop's operator sees none
    with pytest.raises(Forbidden, match="bob does not work for shop alpha"):
        await shop.docket.list_deliveries(bob, shop_id="alpha")
    with pytest.raises(NotFound, match="unknown warehouse west"):
        await shop.docket.list_deliveries(alice, warehouse_id="west")
