"""A bare workflow shaped like an order driven to completion, doing no work: the yardstick for
bench.orders. Imports only temporalio. Its worker passes this module through the sandbox, as
docket's worker does its workflow modules (`runner_for`), so both pay the sandbox the same.

    python -m bench.bare ADDRESS TASK_QUEUE   # its worker in a process of its own, as docket's runs
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys

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


async def work(address: str, task_queue: str) -> None:
    """A worker for `Bare`, built as docket's is: the same data converter and workflow runner."""
    from temporalio.worker import Worker

    from docket.connect import temporal_client
    from docket.runtime import settle_heap
    from docket.settings import Settings
    from docket.worker import runner_for

    client = await temporal_client(Settings(temporal_address=address))
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[Bare],
        activities=[nothing],
        workflow_runner=runner_for(client, packages=["bench.bare"]),  # passed through, as docket's
    )
    settle_heap()  # as docket's worker does
    await worker.run()


if __name__ == "__main__":
    from bench import bare  # the workflow as the module bench.bare defines it, not as __main__

    asyncio.run(bare.work(*sys.argv[1:3]))
