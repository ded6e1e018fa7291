"""The catalogue the tests run on: small, and every fact a test relies on is visible here."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine

from docket.models.access import Role
from docket.store import catalogue
from docket.store.catalogue import (
    Catalogue,
    CustomerIn,
    OpeningStock,
    OperatorIn,
    ProductIn,
    ShopIn,
    WarehouseIn,
)
from docket.store.engine import SessionFactory, make_session_factory

FAR_FUTURE = dt.date(2100, 1, 1)
ALPHA_SECRET = "alpha-sandbox-secret"


def catalogue_for_tests(
    widget_on_hand: int = 10,
    gadget_on_hand: int = 2,
    widget_backorder: bool = False,
    return_days: int = 0,
    payment_deadline_hours: int = 72,
    release_date: dt.date = FAR_FUTURE,
    future_on_hand: int = 0,
) -> Catalogue:
    return Catalogue(
        warehouses=[
            WarehouseIn(warehouse_id="north", name="North", fulfilment_emails=["ship-north@example.test"]),
            WarehouseIn(warehouse_id="south", name="South", fulfilment_emails=["ship-south@example.test"]),
        ],
        shops=[
            ShopIn(
                shop_id="alpha",
                name="Alpha",
                timezone="Europe/Berlin",
                admin_emails=["admin@alpha.test"],
                warehouses=["north", "south"],
                gateway_secrets={"sandbox": ALPHA_SECRET},
                return_days=return_days,
                payment_deadline_hours=payment_deadline_hours,
            ),
            ShopIn(
                shop_id="beta",
                name="Beta",
                admin_emails=["admin@beta.test"],
                warehouses=["south"],
                single_parcel=True,
                return_days=return_days,
            ),
        ],
        products=[
            ProductIn(sku="WIDGET", name="Widget", backorder_allowed=widget_backorder),
            ProductIn(sku="GADGET", name="Gadget", backorder_allowed=True),
            ProductIn(sku="FUTURE", name="Future thing", release_date=release_date),
            ProductIn(sku="EBOOK", name="E-book", digital=True),
            ProductIn(sku="RETIRED", name="Retired", online=False),
        ],
        customers=[CustomerIn(customer_id="c1", name="Ada Buyer", email="ada@example.test")],
        operators=[
            OperatorIn(operator_id="root", name="Root", roles=[Role.admin], token="root-token"),
            OperatorIn(
                operator_id="web",
                name="Web shop",
                roles=[Role.storefront],
                shops=["alpha"],
                token="web-token",
            ),
            OperatorIn(
                operator_id="alice",
                name="Alice",
                email="alice@alpha.test",
                roles=[Role.shop_admin],
                shops=["alpha"],
                token="alice-token",
            ),
            OperatorIn(
                operator_id="bob", name="Bob", roles=[Role.shop_admin], shops=["beta"], token="bob-token"
            ),
            OperatorIn(
                operator_id="carol",
                name="Carol",
                email="carol@alpha.test",
                roles=[Role.call_centre],
                shops=["alpha"],
                token="carol-token",
            ),
            OperatorIn(
                operator_id="pat",
                name="Pat",
                roles=[Role.call_centre_process],
                shops=["alpha"],
                token="pat-token",
            ),
            OperatorIn(
                operator_id="conny",
                name="Conny",
                roles=[Role.call_centre_confirm],
                shops=["alpha"],
                token="conny-token",
            ),
        ],
        stock=[
            OpeningStock(warehouse_id="north", sku="WIDGET", on_hand=widget_on_hand),
            OpeningStock(warehouse_id="north", sku="GADGET", on_hand=gadget_on_hand),
            OpeningStock(warehouse_id="north", sku="FUTURE", on_hand=future_on_hand),
        ],
    )


def catalogued_sessions(engine: Engine, at: dt.datetime) -> SessionFactory:
    """Sessions on `engine`, whose (migrated) store holds the test catalogue, loaded at `at`."""
    factory = make_session_factory(engine)
    with factory.begin() as session:
        catalogue.load(session, catalogue_for_tests(), at)
    return factory
