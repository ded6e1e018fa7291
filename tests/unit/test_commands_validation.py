"""Bad input is refused with a message that says what is wrong and what is allowed."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from docket.models.inputs import problems
from docket.models.schemas import (
    AdjustStock,
    CancelOrder,
    CustomerDetails,
    MoveDelivery,
    OrderLineIn,
    PlaceOrder,
    RetryMail,
)
from docket.store.catalogue import Catalogue, ProductIn
from tests.orders import ADDRESS


def line(**overrides: object) -> dict[str, object]:
    return {"sku": "WIDGET", "quantity": 1, "unit_price": "9.50", "currency": "EUR", **overrides}


@pytest.mark.parametrize("quantity", [0, -2, 1.5, "3"])
def test_a_quantity_must_be_a_positive_integer(quantity: object) -> None:
    with pytest.raises(ValidationError, match="quantity"):
        OrderLineIn.model_validate(line(quantity=quantity))


def test_an_order_is_paid_in_one_currency() -> None:
    with pytest.raises(ValidationError, match="an order is paid in one currency; lines use EUR, USD"):
        PlaceOrder(
            order_id="o",
            shop_id="alpha",
            customer_id="c1",
            shipping_address=ADDRESS,
            lines=[OrderLineIn.model_validate(line()), OrderLineIn.model_validate(line(currency="USD"))],
        )


def test_money_is_decimal_never_float() -> None:
    parsed = OrderLineIn.model_validate(line(unit_price="0.10"))
    assert parsed.unit_price == Decimal("0.10")


def test_an_order_id_is_a_plain_identifier() -> None:
    with pytest.raises(ValidationError, match="order_id"):
        PlaceOrder(
            order_id="has space",
            shop_id="alpha",
            customer_id="c1",
            shipping_address=ADDRESS,
            lines=[OrderLineIn.model_validate(line())],
        )


def test_an_unknown_delivery_move_lists_the_moves_there_are() -> None:
    with pytest.raises(
        ValidationError, match="unknown delivery move 'fly'; one of pack, mark_ready, ship, deliver"
    ):
        MoveDelivery(order_id="o", operator_id="a", delivery_no=1, trigger="fly")


def test_a_stock_adjustment_needs_a_reason_and_a_change() -> None:
    with pytest.raises(ValidationError, match="delta must not be 0"):
        AdjustStock(reference="r", warehouse_id="north", sku="W", delta=0, operator_id="a", note="count")
    with pytest.raises(ValidationError, match="note"):
        AdjustStock(reference="r", warehouse_id="north", sku="W", delta=1, operator_id="a", note="")


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("WIDGET:two:1", "--line 'WIDGET:two:1': write SKU:QUANTITY:UNIT_PRICE, e.g. WIDGET:2:19.90"),
        ("WIDGET:2", "--line 'WIDGET:2': write SKU:QUANTITY:UNIT_PRICE, e.g. WIDGET:2:19.90"),
        ("WIDGET:0:19.90", "--line 'WIDGET:0:19.90': quantity: Input should be greater than 0"),
        ("WIDGET:1:-1", "--line 'WIDGET:1:-1': unit_price: Input should be greater than or equal to 0"),
        ("WIDGET:1:1.999", "unit_price: Decimal input should have no more than 2 decimal places"),
    ],
)
def test_a_command_line_order_line_names_what_is_wrong_with_it(text: str, said: str) -> None:
    from docket.cli import parse_line
    from docket.models.errors import InvalidInput

    with pytest.raises(InvalidInput) as refused:
        parse_line(text, "EUR")
    assert said in str(refused.value)


def test_a_command_line_order_line_takes_a_sku_holding_a_colon() -> None:
    from docket.cli import parse_line

    assert parse_line("BOOK:ISBN:2:19.90", "EUR") == OrderLineIn(
        sku="BOOK:ISBN", quantity=2, unit_price=Decimal("19.90"), currency="EUR"
    )


@pytest.mark.parametrize(
    ("model", "data"),
    [
        (CancelOrder, {"order_id": "o-1", "operator_id": "pat", "reason": "said\x00so"}),
        (
            PlaceOrder,
            {
                "order_id": "o-1",
                "shop_id": "alpha",
                "customer_id": "c1",
                "lines": [line()],
                "shipping_address": {**ADDRESS.model_dump(), "line1": "1 Main\x00St"},
            },
        ),
        (CustomerDetails, {"name": "Ada", "email": "ada@example.test\x00"}),
        (Catalogue, {"products": [{"sku": "LAMP", "name": "Lamp\x00"}]}),
    ],
)
def test_text_holding_a_nul_character_is_refused_at_the_door(model: type, data: dict[str, object]) -> None:
    """PostgreSQL cannot store it: accepted, the move would fail in its activity for ever."""
    with pytest.raises(ValidationError, match=r"text may not contain the NUL character \(\\u0000\)"):
        model.model_validate(data)


def test_a_misspelt_catalogue_field_is_named_not_dropped() -> None:
    with pytest.raises(ValidationError) as refused:
        Catalogue.model_validate({"products": [{"sku": "LAMP", "name": "Lamp", "backorder_alowed": True}]})
    [problem] = refused.value.errors()
    assert (problem["loc"], problem["msg"]) == (
        ("products", 0, "backorder_alowed"),
        "Extra inputs are not permitted",
    )


def test_ids_and_addresses_say_what_they_may_be() -> None:
    with pytest.raises(ValidationError) as refused:
        CustomerDetails(name="Ada", email="ada at example")
    assert refused.value.errors()[0]["msg"] == "not an e-mail address: write it as name@example.com"
    with pytest.raises(ValidationError) as refused:
        ProductIn(sku="MY LAMP", name="Lamp")
    assert refused.value.errors()[0]["msg"] == (
        "use 1 to 64 letters, digits and _ . : - (starting with a letter or digit)"
    )


def test_text_that_is_not_unicode_is_refused_at_the_door() -> None:
    """What a command line makes of a byte that is not UTF-8 (argv is decoded with surrogateescape)."""
    with pytest.raises(ValidationError, match="unable to parse raw data as a unicode string"):
        CancelOrder(order_id="o-1", operator_id="pat", reason=b"caf\xe9".decode(errors="surrogateescape"))


def test_docket_s_own_checks_are_told_in_their_own_words() -> None:
    with pytest.raises(ValidationError) as refused:
        RetryMail()
    assert problems(refused.value.errors()) == (
        "input: name the mails to retry: outbox_ids, or order_id for an order's failed mails"
    )
    with pytest.raises(ValidationError) as refused:
        OrderLineIn.model_validate(line(quantity=0))
    assert problems(refused.value.errors()) == "quantity: Input should be greater than 0"  # pydantic's own
