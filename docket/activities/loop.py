"""An event loop per activity thread, for the asynchronous calls a synchronous activity makes (the
gateway, the mail transport). `asyncio.run` made and tore down a loop for every call: a tenth of
the mail's cost when the mail goes to a maildir.

A move run on the worker's own loop (`docket.activities.inline`) cannot wait there: a call that
completes without waiting (the maildir's) is driven to its end at once; one that would wait is
abandoned before it waited, with `WouldWait`, and the move is run again in a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from docket.store.direct import WouldWait

T = TypeVar("T")


class _Loop:
    """A thread's runner; closes its loop when the thread ends (thread-local values go then)."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()

    def __del__(self) -> None:
        self.runner.close()


_LOCAL = threading.local()


def run_here(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to its end on this thread's own loop; on a thread whose loop is running (a
    move run inline), only if it never waits."""
    if _loop_running():
        try:
            coroutine.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        coroutine.close()
        raise WouldWait("a call that waits (a gateway, a mail server)")
    loop = getattr(_LOCAL, "loop", None)
    if loop is None:
        loop = _LOCAL.loop = _Loop()
    return loop.runner.run(coroutine)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
