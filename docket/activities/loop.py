"""An event loop per activity thread, for the asynchronous calls a synchronous activity makes (the
gateway, the mail transport). `asyncio.run` made and tore down a loop for every call: a tenth of
the mail's cost when the mail goes to a maildir.

A move run on the worker's own loop (`docket.activities.inline`) cannot wait there: a call its
caller knows never waits (the maildir's writes) is driven to its end at once; any other (a
gateway's, a mail server's) is not begun: `WouldWait`, and the move is run again in a thread."""

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


def run_here(coroutine: Coroutine[Any, Any, T], waits: bool = True) -> T:
    """Run `coroutine` to its end on this thread's own loop; on a thread whose loop is running (a
    move run inline), only if the caller says it never `waits`."""
    if _loop_running():
        if waits:
            coroutine.close()  # not begun: nothing of it runs
            raise WouldWait("a call that waits (a gateway, a mail server)")
        try:
            coroutine.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        coroutine.close()
        raise RuntimeError("a call said never to wait waited")
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
