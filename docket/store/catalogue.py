"""Loading a catalogue: shops, warehouses, products, customers, operators, opening stock."""

from __future__ import annotations

import datetime as dt
import secrets
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator
from sqlalchemy.orm import Session

from docket.adapters.payments import GATEWAYS
from docket.models.access import Role
from docket.models.schemas import PaymentFlow, StockMoveKind
from docket.store.queries import token_hash
from docket.store.stock import MoveContext, lock_stock, record
from docket.store.tables import Customer, OperatorRow, Product, Shop, ShopWarehouse, Warehouse


class ShopIn(BaseModel):
    shop_id: str
    name: str
    timezone: str = "UTC"
    payment_flow: PaymentFlow = PaymentFlow.offline
    payment_deadline_hours: int = Field(default=72, gt=0)
    return_days: int = Field(default=30, ge=0)
    single_parcel: bool = False
    admin_emails: list[str] = []
    warehouses: list[str]
    gateway: str = "sandbox"
    gateway_secrets: dict[str, str] = {}
    callback_sources: list[str] = []

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, zone: str) -> str:
        """Checked here: a zone unknown at placement would stop every order of the shop."""
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {zone!r}; use an IANA name such as Europe/Berlin") from None
        return zone

    @field_validator("gateway")
    @classmethod
    def _known_gateway(cls, name: str) -> str:
        if name not in GATEWAYS:
            raise ValueError(f"unknown gateway {name!r}; docket's gateways: {', '.join(GATEWAYS)}")
        return name

    @field_validator("gateway_secrets")
    @classmethod
    def _secrets_of_known_gateways(cls, secrets: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(secrets) - set(GATEWAYS))
        if unknown:
            raise ValueError(
                f"secrets for unknown gateways {', '.join(unknown)}; docket's: {', '.join(GATEWAYS)}"
            )
        return secrets


class WarehouseIn(BaseModel):
    warehouse_id: str
    name: str
    fulfilment_emails: list[str] = []


class ProductIn(BaseModel):
    sku: str
    name: str
    digital: bool = False
    online: bool = True
    backorder_allowed: bool = False
    release_date: dt.date | None = None


class CustomerIn(BaseModel):
    customer_id: str
    name: str
    email: str


class OperatorIn(BaseModel):
    operator_id: str
    name: str
    email: str | None = None
    roles: list[Role]
    shops: list[str] = []
    token: str | None = None


class OpeningStock(BaseModel):
    warehouse_id: str
    sku: str
    on_hand: int = Field(ge=0)


class Catalogue(BaseModel):
    warehouses: list[WarehouseIn] = []
    shops: list[ShopIn] = []
    products: list[ProductIn] = []
    customers: list[CustomerIn] = []
    operators: list[OperatorIn] = []
    stock: list[OpeningStock] = []


def load(session: Session, catalogue: Catalogue, at: dt.datetime) -> dict[str, str]:
    """Insert the catalogue; returns each operator's API token (generated where none was given)."""
    session.add_all(Warehouse(**w.model_dump()) for w in catalogue.warehouses)
    for shop in catalogue.shops:
        session.add(Shop(**shop.model_dump(exclude={"warehouses"})))
    session.add_all(Product(**p.model_dump()) for p in catalogue.products)
    session.add_all(Customer(**c.model_dump()) for c in catalogue.customers)
    session.flush()
    for shop in catalogue.shops:
        session.add_all(
            ShopWarehouse(shop_id=shop.shop_id, warehouse_id=w, preference=i)
            for i, w in enumerate(shop.warehouses)
        )
    tokens = {}
    for op in catalogue.operators:
        token = op.token or secrets.token_urlsafe(24)
        tokens[op.operator_id] = token
        session.add(
            OperatorRow(
                operator_id=op.operator_id,
                name=op.name,
                email=op.email,
                roles=[r.value for r in op.roles],
                shops=op.shops,
                token_hash=token_hash(token),
            )
        )
    session.flush()
    locked = lock_stock(session, [(s.warehouse_id, s.sku) for s in catalogue.stock])
    ctx = MoveContext(at=at, note="opening stock", reference="opening")
    for s in catalogue.stock:
        record(session, locked[(s.warehouse_id, s.sku)], StockMoveKind.receive, ctx, on_hand=s.on_hand)
    return tokens
