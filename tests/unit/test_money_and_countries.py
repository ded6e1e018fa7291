"""Which currencies an order may be placed in, how many decimal places their amounts have, and
which countries it may be shipped to."""

from __future__ import annotations

from decimal import Decimal

import pytest

from docket.models.countries import ISO_3166, check_country
from docket.models.currencies import ISO_4217, amount_text, check_currency, decimal_places


def test_money_in_circulation_is_taken_with_its_minor_unit() -> None:
    assert [check_currency(code) for code in ("EUR", "USD", "GBP", "JPY", "CHF")] == [
        "EUR",
        "USD",
        "GBP",
        "JPY",
        "CHF",
    ]
    assert (decimal_places("EUR"), decimal_places("JPY"), decimal_places("KRW")) == (2, 0, 0)
    assert len(ISO_4217) > 150 and all(len(code) == 3 and code.isupper() for code in ISO_4217)


def test_an_amount_is_written_with_its_currencys_places() -> None:
    assert amount_text(Decimal("3980.00"), "JPY") == "3980"
    assert amount_text(Decimal("19.9"), "EUR") == "19.90"
    assert amount_text(Decimal("123456.70"), "USD", grouped=True) == "123,456.70"


@pytest.mark.parametrize(
    ("code", "said"),
    [
        ("XYZ", "'XYZ' is not an ISO 4217 currency code, such as EUR, USD or GBP"),
        (
            "eur",
            "'eur' is not an ISO 4217 currency code, such as EUR, USD or GBP (write it in capitals: EUR)",
        ),
        ("XAU", "'XAU' is not an ISO 4217 currency code"),  # gold: not money an order is paid in
        ("KWD", "KWD amounts have three decimal places; docket keeps money to two"),
    ],
)
def test_what_is_not_money_docket_keeps_is_refused_saying_why(code: str, said: str) -> None:
    with pytest.raises(ValueError, match="^" + said.replace("(", r"\(").replace(")", r"\)")):
        check_currency(code)


def test_a_parcel_goes_to_an_iso_3166_country_and_nowhere_else() -> None:
    assert [check_country(code) for code in ("DE", "FR", "US", "JP", "XK")] == ["DE", "FR", "US", "JP", "XK"]
    assert len(ISO_3166) == 250  # the 249 of ISO 3166-1, and Kosovo as carriers write it
    with pytest.raises(ValueError, match=r"^'XX' is not an ISO 3166 country code, such as DE, FR or US$"):
        check_country("XX")
