"""Orders per second end to end (placement to completed, operator moves driven by the benchmark)
on the embedded defaults, against a bare workflow with the same activities and updates doing no work.

    python -m bench.orders [--orders 200] [--concurrency 20] [--rounds 3]

Each side also prints its CPU per order in this process (client and worker, one GIL) and in the
dev server, read from /proc over the timed part: on two cores, the ratio follows these totals.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from bench.bare import MOVES, Bare, nothing
from bench.harness import cpu_seconds, eager_activities, embedded, order, store
from docket.models.schemas import ConfirmPayment, MoveDelivery
from docket.runtime import run_worker
from docket.worker import runner_for

USE_EXISTING = WorkflowIDConflictPolicy.USE_EXISTING


@dataclass(frozen=True)
class Run:
    rate: float  # per second
    process_ms: float  # CPU per order: this process (client and worker)
    server_ms: float  # CPU per order: the dev server

    def cpu(self) -> str:
        return f"{self.process_ms:.0f} + {self.server_ms:.0f} ms"


async def timed(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> Run:
    gate = asyncio.Semaphore(concurrency)

    async def bounded(n: int) -> None:
        async with gate:
            await one(n)

    (process, server), started = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(bounded(n) for n in range(count)))
    wall, (process_after, server_after) = time.perf_counter() - started, cpu_seconds()
    return Run(count / wall, 1000 * (process_after - process) / count, 1000 * (server_after - server) / count)


async def docket_rate(settings, count: int, concurrency: int) -> Run:  # type: ignore[no-untyped-def]
    async with store(settings, on_hand=count * 2) as running:
        worker = asyncio.create_task(run_worker(running))
        docket = running.docket
        op = await docket.operator("op")

        async def one(n: int) -> None:
            cmd = order(n)
            await docket.place_order(op, cmd)
            await docket.confirm_payment(op, ConfirmPayment(order_id=cmd.order_id, operator_id="op"))
            for trigger in MOVES:
                await docket.move_delivery(
                    op, MoveDelivery(order_id=cmd.order_id, operator_id="op", delivery_no=1, trigger=trigger)
                )

        await one(-1)  # warm up
        try:
            return await timed(count, concurrency, one)
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)


async def bare_rate(client: Client, count: int, concurrency: int) -> Run:
    queue = f"bare-{uuid.uuid4().hex[:6]}"
    # the runner docket's worker uses: the yardstick pays what docket pays to the SDK
    async with Worker(
        client, task_queue=queue, workflows=[Bare], activities=[nothing], workflow_runner=runner_for(client)
    ):

        async def one(n: int) -> None:
            start = WithStartWorkflowOperation(
                Bare.run, id=f"bare-{queue}-{n}", task_queue=queue, id_conflict_policy=USE_EXISTING
            )
            await client.execute_update_with_start_workflow(Bare.placement, start_workflow_operation=start)
            handle = await start.workflow_handle()
            for name in ("confirm", *MOVES):
                await handle.execute_update(Bare.move, name)

        await one(-1)
        return await timed(count, concurrency, one)


async def main(count: int, concurrency: int, rounds: int) -> None:
    from docket.connect import temporal_client

    print(f"orders end to end: {count} orders, {concurrency} at a time, 6 activities and 6 updates each")
    activities = (count + 1) * 6  # the warm-up included
    ratios = []
    for n in range(1, rounds + 1):
        with embedded() as settings:  # a fresh dev server and store for every round
            docket = await docket_rate(settings, count, concurrency)
            eager_docket = eager_activities(settings)
            bare = await bare_rate(await temporal_client(settings), count, concurrency)
            eager_bare = eager_activities(settings) - eager_docket
        ratios.append(docket.rate / bare.rate)
        print(
            f"  round {n}: docket {docket.rate:5.1f} orders/s, bare {bare.rate:5.1f} workflows/s,"
            f" docket/bare {docket.rate / bare.rate:.2f}\n"
            f"    CPU per order, this process + dev server: docket {docket.cpu()}, bare {bare.cpu()}\n"
            f"    activities handed over eagerly: docket {eager_docket}/{activities}, bare {eager_bare}/{activities}"
        )
    print(f"  docket/bare median of {rounds} = {statistics.median(ratios):.2f}  (target >= 0.80)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.concurrency, args.rounds))
