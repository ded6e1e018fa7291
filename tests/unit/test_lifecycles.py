"""The lifecycle tables: every state reachable, no dead end but the final states."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from docket.models.errors import IllegalTransition
from docket.models.lifecycles import DELIVERY, ORDER, DeliveryState, Lifecycle, OrderState, ruled_out

LIFECYCLES = [(ORDER, OrderState.pending), (DELIVERY, DeliveryState.new)]


def reachable(lifecycle: Lifecycle, start) -> set:  # type: ignore[no-untyped-def]
    seen, todo = {start}, [start]
    while todo:
        state = todo.pop()
        for source, _trigger, dest in lifecycle.edges():
            if source == state and dest not in seen:
                seen.add(dest)
                todo.append(dest)
    return seen


@pytest.mark.parametrize(("lifecycle", "start"), LIFECYCLES, ids=["order", "delivery"])
def test_every_state_is_reachable_from_the_start(lifecycle: Lifecycle, start) -> None:  # type: ignore[no-untyped-def]
    assert reachable(lifecycle, start) == set(lifecycle.states)


@pytest.mark.parametrize(("lifecycle", "start"), LIFECYCLES, ids=["order", "delivery"])
def test_only_final_states_are_dead_ends(lifecycle: Lifecycle, start) -> None:  # type: ignore[no-untyped-def]
    del start
    dead_ends = {s for s in lifecycle.states if not lifecycle.allowed(s)}
    assert dead_ends <= lifecycle.final
    for state in lifecycle.states:
        assert reachable(lifecycle, state) & lifecycle.final, f"{state} can never end"


def test_an_illegal_move_names_the_moves_allowed_from_here() -> None:
    with pytest.raises(IllegalTransition) as refused:
        DELIVERY.dest(DeliveryState.allocated, "ship")
    assert str(refused.value) == "delivery is allocated: cannot ship; allowed from here: pack"


def test_a_refusal_offers_the_moves_an_operator_asks_for_not_those_the_workflow_makes() -> None:
    with pytest.raises(IllegalTransition) as refused:  # cancel_awaiting_refund is the workflow's pick
        ORDER.dest(OrderState.waiting_confirmation, "return_goods")
    assert str(refused.value).endswith("allowed from here: confirm_payment, cancel")
    with pytest.raises(IllegalTransition, match=r"allowed from here: record_refund, retry_refund$"):
        ORDER.dest(OrderState.cancelled_waiting_payment, "cancel")
    with pytest.raises(
        IllegalTransition,
        match=r"delivery is wait_inventory: cannot pack; allowed from here: nothing by hand \(it moves on by",
    ):
        DELIVERY.dest(DeliveryState.wait_inventory, "pack")


def test_a_refusal_leaves_out_the_moves_the_orders_deliveries_rule_out() -> None:
    nothing_sent = [SimpleNamespace(state=DeliveryState.allocated)]
    one_on_its_way = [SimpleNamespace(state=DeliveryState.shipping), *nothing_sent]
    with pytest.raises(IllegalTransition, match=r"allowed from here: cancel$"):
        ORDER.dest(OrderState.in_progress, "confirm_payment", ruled_out(nothing_sent))
    with pytest.raises(IllegalTransition, match=r"allowed from here: return_goods$"):
        ORDER.dest(OrderState.in_progress, "confirm_payment", ruled_out(one_on_its_way))
    # the table alone offers both
    with pytest.raises(IllegalTransition, match=r"allowed from here: cancel, return_goods$"):
        ORDER.dest(OrderState.in_progress, "confirm_payment")


def test_a_final_state_says_nothing_is_allowed() -> None:
    with pytest.raises(IllegalTransition, match=r"nothing \(final state\)"):
        ORDER.dest(OrderState.cancelled, "confirm_payment")


def test_confirming_twice_is_illegal() -> None:
    state = ORDER.dest(OrderState.waiting_confirmation, "confirm_payment")
    with pytest.raises(IllegalTransition, match="cannot confirm_payment"):
        ORDER.dest(state, "confirm_payment")


def test_a_shipped_delivery_cannot_be_voided_or_deallocated() -> None:
    assert DELIVERY.allowed(DeliveryState.shipped) == ["return_goods"]


def test_a_delivery_on_its_way_can_only_be_delivered_or_brought_back() -> None:
    for on_its_way in (DeliveryState.shipping, DeliveryState.shipping_waiting_payment):
        assert DELIVERY.allowed(on_its_way) == ["deliver", "return_goods"]
    assert ORDER.allowed_by_hand(OrderState.in_progress) == ["cancel", "return_goods"]
