"""Order and stock activities: each is one transaction through the store's guarded write path,
applied at most once per move id."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import TypeVar

from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio import activity
from temporalio.exceptions import ApplicationError

from docket.models.errors import DocketError
from docket.models.messages import (
    AdvanceOrder,
    CancelOrderMove,
    ConfirmPaymentMove,
    DeliveryMove,
    PlaceOrderMove,
    ReturnOrderMove,
    StockChange,
)
from docket.models.schemas import AdjustStock, OrderView, StockReceived
from docket.store import moves, stock
from docket.store.engine import SessionFactory
from docket.store.stock import MoveContext
from docket.store.tables import AppliedMove

R = TypeVar("R", bound=BaseModel)


class OrderActivities:
    def __init__(self, sessions: SessionFactory):
        self.sessions = sessions

    @activity.defn(name="place_order")
    async def place_order(self, move: PlaceOrderMove) -> OrderView:
        return await self._once(
            move.move_id,
            move.at,
            OrderView,
            lambda s: moves.place_order(s, move.command, move.move_id, move.at),
        )

    @activity.defn(name="confirm_payment")
    async def confirm_payment(self, move: ConfirmPaymentMove) -> OrderView:
        return await self._once(
            move.move_id,
            move.at,
            OrderView,
            lambda s: moves.confirm_payment(s, move.command, move.move_id, move.at),
        )

    @activity.defn(name="move_delivery")
    async def move_delivery(self, move: DeliveryMove) -> OrderView:
        return await self._once(
            move.move_id,
            move.at,
            OrderView,
            lambda s: moves.move_delivery(s, move.command, move.move_id, move.at),
        )

    @activity.defn(name="cancel_order")
    async def cancel_order(self, move: CancelOrderMove) -> OrderView:
        return await self._once(
            move.move_id,
            move.at,
            OrderView,
            lambda s: moves.cancel_order(s, move.command, move.move_id, move.at),
        )

    @activity.defn(name="return_order")
    async def return_order(self, move: ReturnOrderMove) -> OrderView:
        return await self._once(
            move.move_id,
            move.at,
            OrderView,
            lambda s: moves.return_order(s, move.command, move.move_id, move.at),
        )

    @activity.defn(name="advance_order")
    async def advance_order(self, move: AdvanceOrder) -> OrderView:
        return await self._once(
            move.move_id,
            move.at,
            OrderView,
            lambda s: moves.advance_order(s, move.order_id, move.move_id, move.at),
        )

    @activity.defn(name="change_stock")
    async def change_stock(self, move: StockChange) -> StockReceived:
        cmd = move.command
        ctx = MoveContext(at=move.at, operator_id=cmd.operator_id, note=cmd.note, reference=cmd.reference)

        async def change(session: AsyncSession) -> StockReceived:
            if isinstance(cmd, AdjustStock):
                level, woken = await stock.adjust(session, cmd.warehouse_id, cmd.sku, cmd.delta, ctx)
            else:
                level, woken = await stock.receive(
                    session, cmd.warehouse_id, cmd.sku, cmd.quantity, cmd.kind, ctx, cmd.order_id
                )
            return StockReceived(reference=cmd.reference, level=level, woken=woken)

        return await self._once(move.move_id, move.at, StockReceived, change)

    async def _once(
        self,
        move_id: str,
        at: dt.datetime,
        result_type: type[R],
        change: Callable[[AsyncSession], Awaitable[R]],
    ) -> R:
        """Apply `change` in one transaction unless this move id was applied before: then return
        what it returned the first time. Domain errors are final, anything else is retried."""
        try:
            async with self.sessions.begin() as session:
                prior = await session.get(AppliedMove, move_id)
                if prior is not None:
                    return result_type.model_validate(prior.result)
                result = await change(session)
                session.add(
                    AppliedMove(move_id=move_id, applied_at=at, result=result.model_dump(mode="json"))
                )
            return result
        except DocketError as error:
            raise ApplicationError(str(error), type=error.kind, non_retryable=True) from error
