"""Orders per second end to end (placement to completed, operator moves driven by the benchmark)
on the embedded defaults, against a bare workflow with the same activities and updates doing no work.

    python -m bench.orders [--orders 200] [--concurrency 20] [--rounds 3] [--one-process]

Each side's worker runs in a process of its own, as `docket worker` runs beside the API or the CLI
that sends the commands (this process); with --one-process, in this one. Each side also prints its
CPU per order in this process, in the worker's and in the dev server, read from /proc over the timed
part: on two cores, the ratio follows these totals.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from bench.bare import MOVES, Bare, nothing
from bench.harness import cpu_seconds, eager_activities, embedded, order, store, worker_process
from docket.models.schemas import ConfirmPayment, MoveDelivery
from docket.runtime import run_worker, stop
from docket.worker import runner_for

USE_EXISTING = WorkflowIDConflictPolicy.USE_EXISTING


@dataclass(frozen=True)
class Run:
    rate: float  # per second
    process_ms: float  # CPU per order: this process (the client; with --one-process the worker too)
    worker_ms: float  # CPU per order: the worker's process (none with --one-process)
    server_ms: float  # CPU per order: the dev server

    def cpu(self) -> str:
        worker = f" + {self.worker_ms:.0f}" if self.worker_ms else ""
        return f"{self.process_ms:.0f}{worker} + {self.server_ms:.0f} = {self.total_ms():.0f} ms"

    def total_ms(self) -> float:
        return self.process_ms + self.worker_ms + self.server_ms


async def timed(count: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> Run:
    gate = asyncio.Semaphore(concurrency)

    async def bounded(n: int) -> None:
        async with gate:
            await one(n)

    before, started = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(bounded(n) for n in range(count)))
    wall, after = time.perf_counter() - started, cpu_seconds()
    process, server, worker = (1000 * (a - b) / count for a, b in zip(after, before, strict=True))
    return Run(count / wall, process, worker, server)


async def docket_rate(settings, count: int, concurrency: int, one_process: bool) -> Run:  # type: ignore[no-untyped-def]
    async with store(settings, on_hand=count * 2) as running:
        if one_process:
            worker = asyncio.create_task(run_worker(running))
        else:
            process = worker_process(settings, gc_log=False)
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
            if one_process:
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
            else:
                stop(process, grace=30)


@contextlib.asynccontextmanager
async def bare_worker(client: Client, queue: str, one_process: bool) -> AsyncIterator[None]:
    """The runner docket's worker uses, in a process of its own as docket's: the yardstick pays what
    docket pays to the SDK."""
    if one_process:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[Bare],
            activities=[nothing],
            workflow_runner=runner_for(client, packages=["bench.bare"]),  # passed through, as docket's
        ):
            yield
        return
    address = client.service_client.config.target_host
    process = subprocess.Popen([sys.executable, "-m", "bench.bare", address, queue])
    try:
        yield
    finally:
        stop(process, grace=30)


async def bare_rate(client: Client, count: int, concurrency: int, one_process: bool) -> Run:
    queue = f"bare-{uuid.uuid4().hex[:6]}"
    async with bare_worker(client, queue, one_process):

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


async def main(count: int, concurrency: int, rounds: int, one_process: bool) -> None:
    from docket.connect import temporal_client

    where = "in this process" if one_process else "in a process of its own"
    print(
        f"orders end to end: {count} orders, {concurrency} at a time, 6 activities and 6 updates each;"
        f" the worker {where}"
    )
    activities = (count + 1) * 6  # the warm-up included
    parts = "this process + dev server" if one_process else "client + worker + dev server"
    ratios = []
    for n in range(1, rounds + 1):
        with embedded() as settings:  # a fresh dev server and store for every round
            docket = await docket_rate(settings, count, concurrency, one_process)
            eager_docket = eager_activities(settings)
            bare = await bare_rate(await temporal_client(settings), count, concurrency, one_process)
            eager_bare = eager_activities(settings) - eager_docket
        ratios.append(docket.rate / bare.rate)
        print(
            f"  round {n}: docket {docket.rate:5.1f} orders/s, bare {bare.rate:5.1f} workflows/s,"
            f" docket/bare {docket.rate / bare.rate:.2f}\n"
            f"    CPU per order, {parts}: docket {docket.cpu()}, bare {bare.cpu()}"
            f" (ratio {bare.total_ms() / docket.total_ms():.2f})\n"
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
    parser.add_argument(
        "--one-process", action="store_true", help="each worker in this process, beside the client"
    )
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.concurrency, args.rounds, args.one_process))
