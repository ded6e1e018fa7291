"""An event loop per activity thread, for the asynchronous calls a synchronous activity makes (the
gateway, the mail transport). `asyncio.run` made and tore down a loop for every call: a tenth of
the mail's cost when the mail goes to a maildir."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class _ThreadLoop(threading.local):
    def __init__(self) -> None:
        self.runner = _Runner()


class _Runner:
    """Closes its loop when its thread ends (thread-local values are dropped then)."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()

    def __del__(self) -> None:
        self.runner.close()


_LOCAL = _ThreadLoop()


def run_here(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run `coroutine` to its end on this thread's own loop. Not from inside a running loop."""
    return _LOCAL.runner.runner.run(coroutine)
