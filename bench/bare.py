"""A bare workflow shaped like an order driven to completion, doing no work: the yardstick for
bench.orders. Imports only temporalio, so it runs in the same sandbox as docket's workflows."""

from __future__ import annotations

import datetime as dt

from temporalio import activity, workflow

MOVES = ("pack", "mark_ready", "ship", "deliver")


@activity.defn
async def nothing(_: str) -> str:
    return "ok"


@workflow.defn
class Bare:
    """One activity at start, a `placement` update, then five updates each running one activity:
    the same shape as an order driven to completion, doing no work."""

    def __init__(self) -> None:
        self.started = False
        self.moves = 0

    @workflow.run
    async def run(self) -> None:
        await workflow.execute_activity(nothing, "place", start_to_close_timeout=dt.timedelta(seconds=15))
        self.started = True
        await workflow.wait_condition(
            lambda: self.moves == 1 + len(MOVES) and workflow.all_handlers_finished()
        )

    @workflow.update
    async def placement(self) -> None:
        await workflow.wait_condition(lambda: self.started)

    @workflow.update
    async def move(self, name: str) -> str:
        result = await workflow.execute_activity(
            nothing, name, start_to_close_timeout=dt.timedelta(seconds=15)
        )
        self.moves += 1
        return result
