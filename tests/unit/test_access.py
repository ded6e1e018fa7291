"""Roles and shops decide what an operator may do."""

from __future__ import annotations

import pytest

from docket.models.access import Action, Operator, Role
from docket.models.errors import Forbidden


def operator(*roles: Role, shops: tuple[str, ...] = ("alpha",)) -> Operator:
    return Operator("op", "Op", frozenset(roles), frozenset(shops))


def test_an_operator_of_one_shop_is_told_they_do_not_work_for_another() -> None:
    with pytest.raises(Forbidden, match="op does not work for shop beta"):
        operator(Role.shop_admin).require(Action.cancel_order, "beta")


def test_the_call_centre_reads_and_places_but_does_not_ship() -> None:
    clerk = operator(Role.call_centre)
    clerk.require(Action.place_order, "alpha")
    with pytest.raises(Forbidden, match=r"op \(call_centre\) may not pack and ship deliveries"):
        clerk.require(Action.process_delivery, "alpha")


def test_only_confirm_clerks_confirm_payments_among_the_call_centre() -> None:
    operator(Role.call_centre_confirm).require(Action.confirm_payment, "alpha")
    with pytest.raises(Forbidden):
        operator(Role.call_centre_process).require(Action.confirm_payment, "alpha")


def test_an_admin_works_for_every_shop() -> None:
    operator(Role.admin, shops=()).require(Action.manage_stock, "beta")
