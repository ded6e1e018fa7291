"""Gateway callbacks: authenticate, store, then hand to the order's workflow.

Nothing in a callback is believed before its signature holds. Every authenticated callback is
stored before it is processed, once per gateway event id; a duplicate answers with the first
outcome. A callback that cannot be stored gets 503 (the gateway sends it again); one that cannot
be authenticated gets 401, is logged, and is never stored as a payment fact."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from dataclasses import dataclass

from sqlalchemy import bindparam, select
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session
from temporalio.client import WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode

from docket.adapters.payments import BadCallback, PaymentGateway, parse_fact, shop_of, verify
from docket.commands import Docket, domain_error
from docket.models.access import Action, Operator
from docket.models.errors import DocketError
from docket.models.lifecycles import OrderState
from docket.models.messages import PaymentCallback
from docket.models.payments import CallbackFact
from docket.models.schemas import CallbackView
from docket.store import charges
from docket.store.direct import reading, writing
from docket.store.engine import engine_of
from docket.store.rows import insert_of, shop_row
from docket.store.tables import Order
from docket.store.tables import PaymentCallback as StoredCallback
from docket.workflows.order import OrderWorkflow, workflow_id

log = logging.getLogger("docket.payments")
STATUS = {"NotFound": 404, "InvalidInput": 422, "Refused": 409, "IllegalTransition": 409}


@dataclass(frozen=True)
class Answered:
    status: int
    outcome: str
    duplicate: bool = False


@dataclass(frozen=True)
class Stored:
    """A callback as stored: its id; the first one's answer if it is a duplicate processed before;
    its order's shop and state when it was stored (None: no such order)."""

    callback_id: int
    first: Answered | None = None
    order_shop: str | None = None
    order_state: OrderState | None = None


_STORE = insert_of(
    StoredCallback, "gateway", "event_id", "shop_id", "order_id", "source", "received_at", "body"
).returning(StoredCallback.callback_id)
_FIRST = select(
    StoredCallback.callback_id, StoredCallback.processed_at, StoredCallback.status, StoredCallback.outcome
).where(StoredCallback.gateway == bindparam("gateway"), StoredCallback.event_id == bindparam("event_id"))
_ORDER_OF = select(Order.shop_id, Order.state).where(Order.order_id == bindparam("order_id"))


class Callbacks:
    def __init__(self, docket: Docket, gateways: dict[str, PaymentGateway]):
        self.docket = docket
        self.gateways = gateways
        self.engine = engine_of(docket.sessions)

    async def receive(
        self, gateway: str, body: bytes, timestamp: str | None, signature: str | None, source: str | None
    ) -> Answered:
        """Raises BadCallback for what is refused before anything is stored."""
        known = self.gateways.get(gateway)
        if known is None or gateway == "offline":
            names = ", ".join(sorted(g for g in self.gateways if g != "offline"))
            raise BadCallback(404, f"unknown gateway {gateway!r}; callbacks are taken for: {names}")
        shop_id = shop_of(body)
        shop = await self.docket.look_up(lambda tx: shop_row(tx, shop_id))
        secret = shop.gateway_secrets.get(gateway) if shop else None
        try:
            if secret is None:
                raise BadCallback(401, f"no {gateway} callback secret is set for shop {shop_id!r}")
            if shop is not None and shop.callback_sources and source not in shop.callback_sources:
                raise BadCallback(401, f"callbacks for shop {shop_id} are not taken from {source}")
            verify(secret, timestamp, signature, body, time.time())
        except BadCallback as refused:
            log.warning("refused %s callback from %s for shop %s: %s", gateway, source, shop_id, refused)
            raise
        fact = known.parse_callback(body)
        stored = await self._store(gateway, fact, body, source)
        if stored.first is not None:
            return stored.first
        return await self._process(stored, gateway, fact)

    async def replay(self, operator: Operator) -> list[CallbackView]:
        """Process the stored callbacks not processed yet (a crash after storing one)."""
        operator.require(Action.replay_callbacks)
        waiting = await self.inbox(operator)
        for callback in waiting:

            def stored(
                session: Session, n: int = callback.callback_id
            ) -> tuple[StoredCallback, Order | None]:
                row = session.get_one(StoredCallback, n)
                return row, session.get(Order, row.order_id) if row.order_id else None

            row, order = await self.docket.read(stored)
            found = Stored(
                row.callback_id,
                order_shop=order.shop_id if order else None,
                order_state=order.state if order else None,
            )
            await self._process(found, row.gateway, parse_fact(row.body.encode()))
        return await self.inbox(operator, every=True, ids=[c.callback_id for c in waiting])

    async def inbox(
        self, operator: Operator, every: bool = False, ids: list[int] | None = None
    ) -> list[CallbackView]:
        operator.require(Action.read_orders)
        query = select(StoredCallback).order_by(StoredCallback.callback_id)
        if not every:
            query = query.where(StoredCallback.processed_at.is_(None))
        if ids is not None:
            query = query.where(StoredCallback.callback_id.in_(ids))
        if not operator.all_shops:
            query = query.where(StoredCallback.shop_id.in_(operator.shops))
        rows = await self.docket.read(lambda s: list(s.scalars(query.limit(500))))
        return [
            CallbackView(
                callback_id=r.callback_id,
                gateway=r.gateway,
                event_id=r.event_id,
                shop_id=r.shop_id,
                order_id=r.order_id,
                source=r.source,
                received_at=r.received_at,
                processed_at=r.processed_at,
                status=r.status,
                outcome=r.outcome,
            )
            for r in rows
        ]

    async def _store(self, gateway: str, fact: CallbackFact, body: bytes, source: str | None) -> Stored:
        """Store the callback, and read its order in the same transaction; for a duplicate, the
        first one's id and (once processed) answer."""

        def store() -> Stored:
            try:
                with writing(self.engine) as tx:
                    callback_id = tx.scalar(
                        _STORE,
                        gateway=gateway,
                        event_id=fact.event_id,
                        shop_id=fact.shop_id,
                        order_id=fact.order_id,
                        source=source,
                        received_at=dt.datetime.now(dt.UTC),
                        body=body.decode(),
                    )
                    shop, state = tx.first(_ORDER_OF, order_id=fact.order_id) or (None, None)
                return Stored(callback_id, order_shop=shop, order_state=state)
            except IntegrityError:  # a duplicate: the first one's id, and its answer once processed
                with reading(self.engine) as tx:
                    found = tx.first(_FIRST, gateway=gateway, event_id=fact.event_id)
                    shop, state = tx.first(_ORDER_OF, order_id=fact.order_id) or (None, None)
                assert found is not None  # the key it broke is this callback's
                callback_id, processed_at, status, outcome = found
                first = (
                    None if processed_at is None else Answered(status or 200, outcome or "", duplicate=True)
                )
                return Stored(callback_id, first, order_shop=shop, order_state=state)

        try:
            return await asyncio.to_thread(store)
        except DBAPIError as error:
            log.error("cannot store a %s callback: %s", gateway, error)
            raise BadCallback(503, "the callback cannot be stored now; send it again") from None

    async def _process(self, stored: Stored, gateway: str, fact: CallbackFact) -> Answered:
        """A callback the workflow applied was marked processed in the move's own transaction; one it
        refused (or that found no open order) is marked here."""
        answered = await self._apply(stored, gateway, fact)
        if answered.status == 200:
            return answered

        def mark() -> None:
            with writing(self.engine) as tx:
                charges.mark_processed(tx, stored.callback_id, answered.status, answered.outcome)

        await asyncio.to_thread(mark)
        return answered

    async def _apply(self, stored: Stored, gateway: str, fact: CallbackFact) -> Answered:
        if stored.order_state is None or stored.order_shop != fact.shop_id:
            return Answered(404, f"unknown order {fact.order_id} of shop {fact.shop_id}")
        handle = self.docket.temporal.get_workflow_handle(
            workflow_id(fact.order_id, self.docket.workflow_id_prefix)
        )
        try:
            result = await self.docket.answer(
                handle.execute_update(
                    OrderWorkflow.payment_callback,
                    PaymentCallback(gateway=gateway, fact=fact, callback_id=stored.callback_id),
                ),
                f"the callback is stored and was sent to order {fact.order_id}",
                "send it again, or replay it with docket payment inbox --replay",
            )
        except WorkflowUpdateFailedError as failed:
            error = domain_error(failed)
            if isinstance(error, DocketError):
                return Answered(STATUS.get(error.kind, 409), str(error))
            raise
        except RPCError as error:
            if error.status is not RPCStatusCode.NOT_FOUND:
                raise
            closed = stored.order_state.value
            return Answered(409, f"order {fact.order_id} is {closed} and closed: nothing changed")
        return Answered(200, result.outcome)
