"""An event loop per activity thread, for the asynchronous calls a synchronous activity makes (the
gateway, the mail transport). `asyncio.run` made and tore down a loop for every call: a tenth of
the mail's cost when the mail goes to a maildir."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _Loop:
    """A thread's runner; closes its loop when the thread ends (thread-local values go then)."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()

    def __del__(self) -> None:
        self.runner.close()


_LOCAL = threading.local()


def run_here(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to its end on this thread's own loop. Not from inside a running loop."""
    loop = getattr(_LOCAL, "loop", None)
    if loop is None:
        loop = _LOCAL.loop = _Loop()
    return loop.runner.run(coroutine)
