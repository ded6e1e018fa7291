"""Moves run on the worker's event loop when nothing would make them wait: the embedded defaults.

On SQLite with mail into the maildir a move waits for nothing but SQLite's write lock: its
transaction and its mail files are a millisecond or two of local work. Run in an activity thread,
that work takes turns at the interpreter lock with the SDK's event loop at every call into SQLite
and every file written, and costs a good deal more CPU than the same work done in one stretch
(docs/performance.md, "Moves on the worker's loop"). So there each local move is registered as an
asynchronous activity that runs the synchronous move right on the loop, `without_waiting`:

- a write that finds the write lock taken (by one of this worker's threads, or by another
  process: the API storing a callback, a stock receipt from the CLI) raises `WouldWait` before it
  begins;
- a call that may wait (a gateway's, a mail server's) is not begun: `WouldWait` (`run_here`).

Either way the move is then run again in an activity thread, as it would be anywhere else. That
second run is a retry of the first. Mostly the first found the lock taken at its first write and
did nothing. If it was the write that records the move's mail as sent (the move applied, its mail
written), the retry finds the move applied, answers as the first did and hands the mail to the
background delivery, which writes it again under the same name: one file per Message-ID, as after
a worker's crash. Moves that call a gateway (a charge, a capture at shipping, refunds, a gateway's
callback) are not tried here at all.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

from temporalio import activity

from docket.activities.orders import OrderActivities
from docket.models.messages import DeliveryMove
from docket.models.schemas import PaymentFlow
from docket.store.direct import WouldWait, without_waiting

M = TypeVar("M")
R = TypeVar("R")


def inline_moves(orders: OrderActivities, threads: Executor) -> dict[str, Callable[..., Any]]:
    """The order activities that may run on the loop, by name, as asynchronous activities of the
    same names; `threads` runs each one the loop cannot."""
    return {
        "place_order": _on_loop(orders.place_order, threads),
        "confirm_payment": _on_loop(orders.confirm_payment, threads),
        "move_delivery": _on_loop(orders.move_delivery, threads, local=_ships_without_capture),
        "advance_order": _on_loop(orders.advance_order, threads),
        "record_refund": _on_loop(orders.record_refund, threads),
        "change_stock": _on_loop(orders.change_stock, threads),
    }


def _ships_without_capture(move: DeliveryMove) -> bool:
    """Shipping a delivery paid per shipment captures its amount at the gateway first."""
    return move.command.trigger != "ship" or move.payment_flow not in (PaymentFlow.per_shipment, None)


def _always(_: Any) -> bool:
    return True


def _on_loop(
    move: Callable[[M], R], threads: Executor, local: Callable[[M], bool] = _always
) -> Callable[[M], Any]:
    """`move` as an asynchronous activity of the same name: run here when it is `local` and nothing
    makes it wait, else in `threads` (with the activity's context, as the SDK runs a synchronous
    activity)."""
    name = activity._Definition.must_from_callable(move).name

    @functools.wraps(move)
    async def run(given: M) -> R:
        if local(given):
            try:
                with without_waiting():
                    return move(given)
            except WouldWait:
                pass
        call = functools.partial(contextvars.copy_context().run, move, given)
        return await asyncio.get_running_loop().run_in_executor(threads, call)

    del run.__temporal_activity_definition  # type: ignore[attr-defined]  # copied by wraps
    return activity.defn(name=name)(run)
