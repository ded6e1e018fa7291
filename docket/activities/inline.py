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

from docket.models.messages import DeliveryMove
from docket.models.schemas import PaymentFlow
from docket.store.direct import WouldWait, without_waiting

M = TypeVar("M")
R = TypeVar("R")


def _ships_without_capture(move: DeliveryMove) -> bool:
    """Shipping a delivery paid per shipment captures its amount at the gateway first."""
    return move.command.trigger != "ship" or move.payment_flow not in (PaymentFlow.per_shipment, None)


def _always(_: Any) -> bool:
    return True


# The moves that may run on the loop, by activity name, and which of their calls may.
LOCAL: dict[str, Callable[[Any], bool]] = {
    "place_order": _always,
    "confirm_payment": _always,
    "move_delivery": _ships_without_capture,
    "advance_order": _always,
    "record_refund": _always,
    "change_stock": _always,
}


def on_loop_where_local(moves: list[Callable[..., Any]], threads: Executor) -> list[Callable[..., Any]]:
    """`moves` (synchronous activities), those in `LOCAL` made asynchronous activities of the same
    names that run on the loop; `threads` runs each call the loop cannot."""
    return [
        _on_loop(move, threads, LOCAL[name]) if (name := _name(move)) in LOCAL else move for move in moves
    ]


def _name(move: Callable[..., Any]) -> str:
    return str(activity._Definition.must_from_callable(move).name)


def _on_loop(move: Callable[[M], R], threads: Executor, local: Callable[[M], bool]) -> Callable[[M], Any]:
    """`move` as an asynchronous activity of the same name: run here when it is `local` and nothing
    makes it wait, else in `threads` (with the activity's context, as the SDK runs a synchronous
    activity)."""
    name = _name(move)

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
