"""The catalogue: shops, warehouses, products, customers, operators, opening stock.

Loading a catalogue file creates what it names that the store does not have yet and brings what it
has to what the file says (only the fields the file gives); entries the file does not name are left
as they are, so the same file loaded twice changes nothing the second time. The whole file is
checked first and loads in one transaction, or nothing loads.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections import Counter
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator
from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from docket.adapters.payments import GATEWAYS
from docket.models.access import Role
from docket.models.errors import InvalidInput, NotFound
from docket.models.inputs import Input
from docket.models.schemas import (
    CustomerChangeView,
    CustomerDetails,
    CustomerPage,
    CustomerSaved,
    CustomerView,
    Email,
    Identifier,
    PaymentFlow,
    Saved,
    StockMoveKind,
)
from docket.store.direct import Tx
from docket.store.queries import paged, token_hash
from docket.store.stock import MoveContext, lock_stock, record
from docket.store.tables import (
    Base,
    Customer,
    CustomerChange,
    OperatorRow,
    Product,
    Shop,
    ShopWarehouse,
    StockMovement,
    Warehouse,
)

OPENING = "opening"  # the reference of opening stock in the ledger


class ShopIn(Input):
    shop_id: Identifier
    name: str
    timezone: str = "UTC"
    payment_flow: PaymentFlow = PaymentFlow.offline
    payment_deadline_hours: int = Field(default=72, gt=0)
    return_days: int = Field(default=30, ge=0)
    single_parcel: bool = False
    admin_emails: list[Email] = []
    warehouses: list[Identifier] = Field(min_length=1)
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


class WarehouseIn(Input):
    warehouse_id: Identifier
    name: str
    fulfilment_emails: list[Email] = []


class ProductIn(Input):
    sku: Identifier
    name: str
    digital: bool = False
    online: bool = True
    backorder_allowed: bool = False
    release_date: dt.date | None = None


class CustomerIn(CustomerDetails):
    customer_id: Identifier


class OperatorIn(Input):
    operator_id: Identifier
    name: str
    email: Email | None = None
    roles: list[Role]
    shops: list[Identifier] = []
    token: str | None = Field(default=None, min_length=1)


class OpeningStock(Input):
    warehouse_id: Identifier
    sku: Identifier
    on_hand: int = Field(ge=0)


class Catalogue(Input):
    warehouses: list[WarehouseIn] = []
    shops: list[ShopIn] = []
    products: list[ProductIn] = []
    customers: list[CustomerIn] = []
    operators: list[OperatorIn] = []
    stock: list[OpeningStock] = []


class Loaded(BaseModel):
    """What a load did, by kind: ids created and ids changed; the API tokens it set."""

    created: dict[str, list[str]] = {}
    changed: dict[str, list[str]] = {}
    api_tokens: dict[str, str] = {}

    def note(self, kind: str, key: str, saved: Saved) -> None:
        if saved is not Saved.unchanged:
            getattr(self, saved.value).setdefault(kind, []).append(key)


def load(session: Session, catalogue: Catalogue, at: dt.datetime) -> Loaded:
    """Create or bring up to date what `catalogue` names, in the caller's transaction. Raises
    InvalidInput naming every problem (and writes nothing) when the file does not hold together
    with itself or with the store."""
    recorded = _check(session, catalogue)
    loaded = Loaded()
    for w in catalogue.warehouses:
        loaded.note("warehouses", w.warehouse_id, _put(session, Warehouse, w, w.warehouse_id))
    for shop in catalogue.shops:
        saved = _put(session, Shop, shop, shop.shop_id, exclude={"warehouses"})
        if _ship_from(session, shop.shop_id, shop.warehouses) and saved is Saved.unchanged:
            saved = Saved.changed
        loaded.note("shops", shop.shop_id, saved)
    for p in catalogue.products:
        loaded.note("products", p.sku, _put(session, Product, p, p.sku))
    for c in catalogue.customers:
        saved = _put(session, Customer, c, c.customer_id)
        _record_change(session, c.customer_id, saved, None, at)
        loaded.note("customers", c.customer_id, saved)
    for op in catalogue.operators:
        loaded.note("operators", op.operator_id, _put_operator(session, op, loaded.api_tokens))
    session.flush()
    _opening_stock(session, catalogue.stock, recorded, at, loaded)
    return loaded


def save_customer(
    session: Session, customer_id: str, details: CustomerDetails, operator_id: str, at: dt.datetime
) -> CustomerSaved:
    """Create the customer or bring it to `details`, recording who did; two first saves at once
    both succeed."""
    entry = CustomerIn(customer_id=customer_id, **details.model_dump())
    try:
        with session.begin_nested():
            saved = _put(session, Customer, entry, customer_id)
    except IntegrityError:  # created by someone else since we looked: now it is there to change
        saved = _put(session, Customer, entry, customer_id)
    _record_change(session, customer_id, saved, operator_id, at)
    return CustomerSaved(customer=_view(session.get_one(Customer, customer_id)), outcome=saved)


def customer_history(session: Session, customer_id: str) -> list[CustomerChangeView]:
    """Every registration and change of the customer, oldest first."""
    customer(session, customer_id)  # unknown: NotFound
    rows = session.scalars(
        select(CustomerChange)
        .where(CustomerChange.customer_id == customer_id)
        .order_by(CustomerChange.change_id)
    )
    return [
        CustomerChangeView(
            at=r.at, operator_id=r.operator_id, outcome=Saved(r.outcome), name=r.name, email=r.email
        )
        for r in rows
    ]


def _record_change(
    session: Session, customer_id: str, saved: Saved, operator_id: str | None, at: dt.datetime
) -> None:
    if saved is Saved.unchanged:
        return
    row = session.get_one(Customer, customer_id)
    session.add(
        CustomerChange(
            at=at,
            customer_id=customer_id,
            operator_id=operator_id,
            outcome=saved.value,
            name=row.name,
            email=row.email,
        )
    )


def customer(session: Session, customer_id: str) -> CustomerView:
    row = session.get(Customer, customer_id)
    if row is None:
        raise NotFound(f"unknown customer {customer_id}")
    return _view(row)


def find_customers(session: Session, text: str | None, page: int = 1, page_size: int = 50) -> CustomerPage:
    """Customers whose id, name or e-mail address holds `text` (any case), by name; every
    customer without it. A scan: fine for the customers of a shop, not for millions."""
    query = select(Customer)
    if text:
        wanted = text.lower()
        query = query.where(
            or_(
                *(
                    func.lower(column).contains(wanted, autoescape=True)
                    for column in (Customer.customer_id, Customer.name, Customer.email)
                )
            )
        )
    total, rows = paged(session, query.order_by(Customer.name, Customer.customer_id), page, page_size)
    return CustomerPage(
        customers=[_view(r) for r in rows.scalars()], page=page, page_size=page_size, total=total
    )


def _view(row: Customer) -> CustomerView:
    return CustomerView(customer_id=row.customer_id, name=row.name, email=row.email)


def reissue_token(session: Session, operator_id: str) -> str:
    """A new API token for the operator; the old one stops working at once."""
    row = session.get(OperatorRow, operator_id, with_for_update=True)
    if row is None:
        known = ", ".join(session.scalars(select(OperatorRow.operator_id).order_by(OperatorRow.operator_id)))
        raise NotFound(f"unknown operator {operator_id}; operators: {known or 'none yet'}")
    token = secrets.token_urlsafe(24)
    row.token_hash = token_hash(token)
    return token


def _put(
    session: Session, table: type[Base], entry: BaseModel, key: str, exclude: set[str] | None = None
) -> Saved:
    """Insert the row, or set the fields the entry was given where they differ."""
    row = session.get(table, key)
    if row is None:
        session.add(table(**entry.model_dump(exclude=exclude)))
        session.flush()
        return Saved.created
    return _set(row, entry.model_dump(exclude_unset=True, exclude=exclude))


def _set(row: Base, fields: dict[str, Any]) -> Saved:
    changes = {name: value for name, value in fields.items() if getattr(row, name) != value}
    for name, value in changes.items():
        setattr(row, name, value)
    return Saved.changed if changes else Saved.unchanged


def _ship_from(session: Session, shop_id: str, warehouses: list[str]) -> bool:
    """Set the shop's warehouses, in order of preference; True when they changed."""
    now = list(
        session.scalars(
            select(ShopWarehouse.warehouse_id)
            .where(ShopWarehouse.shop_id == shop_id)
            .order_by(ShopWarehouse.preference)
        )
    )
    if now == warehouses:
        return False
    session.execute(delete(ShopWarehouse).where(ShopWarehouse.shop_id == shop_id))
    session.add_all(
        ShopWarehouse(shop_id=shop_id, warehouse_id=w, preference=i) for i, w in enumerate(warehouses)
    )
    return True


def _put_operator(session: Session, op: OperatorIn, tokens: dict[str, str]) -> Saved:
    """A new operator gets the file's token or a new one; a known one keeps its token unless the
    file gives another. Either way a token set here is answered once, in `tokens`."""
    row = session.get(OperatorRow, op.operator_id)
    fields: dict[str, Any] = op.model_dump(exclude_unset=True, exclude={"operator_id", "token"})
    if "roles" in fields:
        fields["roles"] = [r.value for r in op.roles]
    if row is None:
        token = op.token or secrets.token_urlsafe(24)
        session.add(OperatorRow(operator_id=op.operator_id, token_hash=token_hash(token), **fields))
        tokens[op.operator_id] = token
        return Saved.created
    if op.token is not None and token_hash(op.token) != row.token_hash:
        fields["token_hash"] = token_hash(op.token)
        tokens[op.operator_id] = op.token
    return _set(row, fields)


def _opening_stock(
    session: Session,
    opening: list[OpeningStock],
    recorded: dict[tuple[str, str], int],
    at: dt.datetime,
    loaded: Loaded,
) -> None:
    """Opening stock is recorded once per warehouse and SKU (reference `opening`); the same figure
    again changes nothing (`_check` refused another)."""
    fresh = [s for s in opening if (s.warehouse_id, s.sku) not in recorded and s.on_hand]
    if not fresh:
        return
    session.flush()  # the warehouses and products the stock rows refer to
    tx = Tx.of(session)
    locked = lock_stock(tx, [(s.warehouse_id, s.sku) for s in fresh])
    ctx = MoveContext(at=at, note="opening stock", reference=OPENING)
    for s in fresh:
        record(tx, locked[(s.warehouse_id, s.sku)], StockMoveKind.receive, ctx, on_hand=s.on_hand)
        loaded.note("stock", f"{s.warehouse_id}/{s.sku}", Saved.created)
    tx.flush()


def _recorded_opening(session: Session, opening: list[OpeningStock]) -> dict[tuple[str, str], int]:
    if not opening:
        return {}
    m = StockMovement
    rows = session.execute(
        select(m.warehouse_id, m.sku, func.sum(m.on_hand_delta))
        .where(
            m.reference == OPENING,
            m.kind == StockMoveKind.receive,
            m.warehouse_id.in_({s.warehouse_id for s in opening}),
            m.sku.in_({s.sku for s in opening}),
        )
        .group_by(m.warehouse_id, m.sku)
    )
    return {(w, sku): int(total) for w, sku, total in rows}


def _check(session: Session, catalogue: Catalogue) -> dict[tuple[str, str], int]:
    """Every problem at once: entries named twice, names of things neither in the file nor in the
    store, opening stock the store already records differently. Answers the opening stock the
    store records for the file's items."""
    problems: list[str] = []
    for kind, keys in (
        ("warehouse", [w.warehouse_id for w in catalogue.warehouses]),
        ("shop", [s.shop_id for s in catalogue.shops]),
        ("product", [p.sku for p in catalogue.products]),
        ("customer", [c.customer_id for c in catalogue.customers]),
        ("operator", [o.operator_id for o in catalogue.operators]),
        ("opening stock of", [f"{s.sku} at {s.warehouse_id}" for s in catalogue.stock]),
    ):
        problems += [f"{kind} {key} is named {n} times" for key, n in Counter(keys).items() if n > 1]
    tokens = Counter(o.token for o in catalogue.operators if o.token)
    problems += [f"{n} operators are given the same token" for n in tokens.values() if n > 1]
    for op in catalogue.operators:
        holder = op.token and session.scalar(
            select(OperatorRow.operator_id).where(OperatorRow.token_hash == token_hash(op.token))
        )
        if holder and holder != op.operator_id:
            problems.append(f"operator {op.operator_id} is given the token operator {holder} holds")

    warehouses = _known(session, Warehouse.warehouse_id, catalogue.warehouses, "warehouse_id")
    shops = _known(session, Shop.shop_id, catalogue.shops, "shop_id")
    skus = _known(session, Product.sku, catalogue.products, "sku")
    for shop in catalogue.shops:
        problems += [
            f"shop {shop.shop_id} ships from unknown warehouse {w}"
            for w in shop.warehouses
            if w not in warehouses
        ]
    for op in catalogue.operators:
        problems += [
            f"operator {op.operator_id} works for unknown shop {s}" for s in op.shops if s not in shops
        ]
    for s in catalogue.stock:
        if s.warehouse_id not in warehouses:
            problems.append(f"opening stock of {s.sku} is in unknown warehouse {s.warehouse_id}")
        if s.sku not in skus:
            problems.append(f"opening stock names unknown product {s.sku}")
    digital = {p.sku for p in catalogue.products if p.digital} | set(
        session.scalars(select(Product.sku).where(Product.digital.is_(True)))
    )
    problems += [
        f"opening stock of {s.sku} at {s.warehouse_id}: a digital product keeps no stock"
        for s in catalogue.stock
        if s.sku in digital
    ]
    recorded = _recorded_opening(session, catalogue.stock)
    for s in catalogue.stock:
        was = recorded.get((s.warehouse_id, s.sku))
        if was is not None and was != s.on_hand:
            problems.append(
                f"opening stock of {s.sku} at {s.warehouse_id} was recorded as {was}, the file says "
                f"{s.on_hand} (opening stock is recorded once: change it with `docket stock receive` "
                "or `docket stock adjust`)"
            )
    if problems:
        raise InvalidInput("nothing loaded: " + "; ".join(problems))
    return recorded


def _known(session: Session, column: Any, entries: list[Any], key: str) -> set[str]:
    """The ids the file names and the store has."""
    return {getattr(e, key) for e in entries} | set(session.scalars(select(column)))
