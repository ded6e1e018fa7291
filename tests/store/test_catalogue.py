"""Loading a catalogue again, and customers saved one by one, on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from sqlalchemy import Engine, func, select, text

from docket.models.errors import InvalidInput, NotFound
from docket.models.schemas import CustomerDetails, Saved
from docket.store import catalogue, queries, stock
from docket.store.catalogue import OpeningStock, OperatorIn, ProductIn, ShopIn
from docket.store.engine import SessionFactory
from docket.store.tables import Customer, Product, Shop, ShopWarehouse, StockMovement
from tests.catalogue import catalogue_for_tests, catalogued_sessions

NOW = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)


@pytest.fixture
def sessions(engine: Engine) -> SessionFactory:
    return catalogued_sessions(engine, NOW)


def test_the_same_catalogue_loaded_again_changes_nothing(sessions: SessionFactory) -> None:
    def ledger_rows() -> int | None:
        with sessions() as s:
            return s.scalar(select(func.count()).select_from(StockMovement))

    first = ledger_rows()
    with sessions.begin() as s:
        again = catalogue.load(s, catalogue_for_tests(), NOW)

    assert (again.created, again.changed, again.api_tokens) == ({}, {}, {})
    with sessions() as s:
        [level] = stock.levels(s, "north", "WIDGET")
    assert (level.on_hand, level.reserved) == (10, 0)  # the opening stock counted once
    assert first and ledger_rows() == first


def test_a_changed_catalogue_creates_what_is_new_and_changes_only_the_fields_it_gives(
    sessions: SessionFactory,
) -> None:
    changed = catalogue_for_tests(widget_backorder=True)
    changed.products.append(ProductIn(sku="POSTER", name="Poster"))
    changed.shops[1] = ShopIn(shop_id="beta", name="Beta", warehouses=["north", "south"])

    with sessions.begin() as s:
        loaded = catalogue.load(s, changed, NOW)

    assert loaded.created == {"products": ["POSTER"]}
    assert loaded.changed == {"shops": ["beta"], "products": ["WIDGET"]}
    with sessions() as s:
        beta = s.get_one(Shop, "beta")
        ships_from = s.scalars(
            select(ShopWarehouse.warehouse_id)
            .where(ShopWarehouse.shop_id == "beta")
            .order_by(ShopWarehouse.preference)
        ).all()
        assert s.get_one(Product, "WIDGET").backorder_allowed is True
    assert ships_from == ["north", "south"]
    # fields the file leaves out keep what the store had (beta was loaded as one parcel, 0 return days)
    assert (beta.single_parcel, beta.return_days, beta.admin_emails) == (True, 0, ["admin@beta.test"])


def test_a_catalogue_that_does_not_hold_together_is_refused_whole_naming_every_problem(
    sessions: SessionFactory,
) -> None:
    bad = catalogue_for_tests()
    bad.products.append(ProductIn(sku="POSTER", name="Poster"))  # new, and would be fine
    bad.shops.append(ShopIn(shop_id="gamma", name="Gamma", warehouses=["west"]))
    bad.operators.append(OperatorIn(operator_id="nina", name="Nina", roles=["call_centre"], shops=["gama"]))
    bad.stock = [
        OpeningStock(warehouse_id="north", sku="WIDGET", on_hand=12),  # 10 were recorded
        OpeningStock(warehouse_id="north", sku="EBOOK", on_hand=5),  # digital: no stock
    ]
    bad.products.append(ProductIn(sku="WIDGET", name="Widget again"))
    bad.operators.append(OperatorIn(operator_id="mallory", name="Mallory", roles=[], token="alice-token"))

    with sessions.begin() as s, pytest.raises(InvalidInput) as refused:
        catalogue.load(s, bad, NOW)

    said = str(refused.value)
    assert said.startswith("nothing loaded: ")
    assert "product WIDGET is named 2 times" in said
    assert "shop gamma ships from unknown warehouse west" in said
    assert "operator nina works for unknown shop gama" in said
    assert "opening stock of WIDGET at north was recorded as 10, the file says 12" in said
    assert "operator mallory is given the token operator alice holds" in said
    assert "opening stock of EBOOK at north: a digital product keeps no stock" in said
    with sessions() as s:
        assert s.get(Product, "POSTER") is None
        assert s.get(Shop, "gamma") is None


def test_an_operator_loaded_again_keeps_the_token_until_one_is_given_or_reissued(
    sessions: SessionFactory,
) -> None:
    file = catalogue_for_tests()
    with sessions.begin() as s:
        assert catalogue.load(s, file, NOW).api_tokens == {}
    with sessions() as s:
        assert queries.operator_by_token(s, "alice-token") is not None

    with sessions.begin() as s:
        new = catalogue.reissue_token(s, "alice")
    with sessions() as s:
        assert queries.operator_by_token(s, "alice-token") is None  # the old one stopped working
        alice = queries.operator_by_token(s, new)
        assert alice is not None and alice.operator_id == "alice"

    with (
        sessions.begin() as s,
        pytest.raises(NotFound, match="unknown operator nobody; operators: alice, bob"),
    ):
        catalogue.reissue_token(s, "nobody")


def test_saving_a_customer_creates_changes_or_leaves_it_and_says_who_did(sessions: SessionFactory) -> None:
    ada = CustomerDetails(name="Ada Lovelace", email="ada@lovelace.test")
    outcomes = []
    for who, details in (
        ("web", ada),
        ("web", ada),
        ("carol", ada.model_copy(update={"email": "ada@king.test"})),
    ):
        with sessions.begin() as s:
            outcomes.append(catalogue.save_customer(s, "ada-l", details, who, NOW).outcome)

    assert outcomes == [Saved.created, Saved.unchanged, Saved.changed]
    with sessions() as s:
        assert s.get_one(Customer, "ada-l").email == "ada@king.test"
        history = catalogue.customer_history(s, "ada-l")
        loaded_from_file = catalogue.customer_history(s, "c1")
    assert [(h.operator_id, h.outcome, h.email) for h in history] == [
        ("web", Saved.created, "ada@lovelace.test"),
        ("carol", Saved.changed, "ada@king.test"),  # the address the mails went to before is kept
    ]
    assert [(h.operator_id, h.outcome) for h in loaded_from_file] == [(None, Saved.created)]


@pytest.mark.postgres
def test_a_customer_saved_while_another_save_of_it_commits_is_changed_not_refused(
    postgres_engine: Engine,
) -> None:
    """A storefront retrying a registration that timed out sends it again while the first is still
    being written: the second waits for the first and then changes what it wrote."""
    sessions = catalogued_sessions(postgres_engine, NOW)
    second: list[Saved] = []

    def save_again() -> None:
        with sessions.begin() as s:
            second.append(
                catalogue.save_customer(
                    s, "eve", CustomerDetails(name="Eve", email="eve@b.test"), "web", NOW
                ).outcome
            )

    with sessions.begin() as first:
        assert (
            catalogue.save_customer(
                first, "eve", CustomerDetails(name="Eve", email="eve@a.test"), "web", NOW
            ).outcome
            is Saved.created
        )
        racer = threading.Thread(target=save_again)
        racer.start()
        while racer.is_alive() and not _waiting_for_a_lock(postgres_engine):  # its insert waits on ours
            time.sleep(0.01)
    racer.join()

    assert second == [Saved.changed]
    with sessions() as s:
        assert s.get_one(Customer, "eve").email == "eve@b.test"


def _waiting_for_a_lock(engine: Engine) -> bool:
    with engine.connect() as connection:
        return bool(connection.scalar(text("SELECT count(*) FROM pg_locks WHERE NOT granted")))


def test_a_caller_is_found_by_part_of_their_name_address_or_id_in_any_case(sessions: SessionFactory) -> None:
    people = [
        ("k-1", "Grace Hopper", "grace@navy.test"),
        ("k-2", "Alan Turing", "alan@bletchley.test"),
        ("k-3", "Grace Kelly", "kelly_g@monaco.test"),
        ("k-4", "100% Cotton Ltd", "orders@cotton.test"),
    ]
    with sessions.begin() as s:
        for customer_id, name, email in people:
            catalogue.save_customer(s, customer_id, CustomerDetails(name=name, email=email), "carol", NOW)

    def found(text: str | None, **paging: int) -> list[str]:
        with sessions() as s:
            return [c.customer_id for c in catalogue.find_customers(s, text, **paging).customers]

    assert found("GRACE") == ["k-1", "k-3"]  # by name, any case
    assert found("bletchley") == ["k-2"]  # by e-mail address
    assert found("K-4") == ["k-4"]  # by id
    assert found("y_g") == ["k-3"] and found("_") == ["k-3"]  # _ and % are plain text, not wildcards
    assert found("0%") == ["k-4"]
    assert found("nobody") == []
    with sessions() as s:
        page = catalogue.find_customers(s, "grace", page=2, page_size=1)
    assert ([c.customer_id for c in page.customers], page.total) == (["k-3"], 2)
    assert len(found(None)) == 5  # everyone, with the catalogue's own customer
