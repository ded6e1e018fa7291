"""Orders per second end to end (placement to completed, operator moves driven by the benchmark)
on the embedded defaults, against a bare workflow with the same activities and updates doing no work.

    python -m bench.orders [--orders 200] [--concurrency 20] [--rounds 3] [--chunk 25] [--one-process]

Each round starts a dev server and a store of its own, and both sides' workers; then docket and
the bare workflow take turns, `--chunk` orders each, until each has run `--orders`. The shared
machine's speed drifts by half within a minute: sides run one after the other for a minute each
were measured at different speeds, and a round's ratio moved by a tenth with that alone; turns of a
few seconds each meet the same drift. The rate of each side is its orders over the time its own
turns took.

Each side's worker runs in a process of its own, as `docket worker` runs beside the API or the CLI
that sends the commands (this process); with --one-process, in this one. Each side also prints its
CPU per order in this process, in its worker's and in the dev server, read from /proc over its own
turns: on two cores, the ratio follows these totals.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import Worker

from bench.bare import MOVES, Bare, nothing
from bench.harness import (
    cpu_seconds,
    eager_activities,
    embedded,
    file_creation_us,
    order,
    store,
    worker_process,
)
from docket.models.schemas import ConfirmPayment, MoveDelivery
from docket.runtime import run_worker, stop
from docket.worker import runner_for

USE_EXISTING = WorkflowIDConflictPolicy.USE_EXISTING
One = Callable[[int], Awaitable[None]]


@dataclass
class Side:
    """One side of a round: what drives one order, its worker's process (None: in this one), and
    what its turns added up to."""

    one: One
    worker_pid: int | None
    orders: int = 0
    wall: float = 0.0
    process_s: float = 0.0  # CPU: this process (the client; with --one-process the workers too)
    worker_s: float = 0.0  # CPU: the side's worker process
    worker_system_s: float = 0.0  # of which in the kernel (files, the database's writes)
    server_s: float = 0.0  # CPU: the dev server

    @property
    def rate(self) -> float:
        return self.orders / self.wall

    def ms(self, seconds: float) -> float:
        return 1000 * seconds / self.orders

    def cpu(self) -> str:
        worker = (
            f" + {self.ms(self.worker_s):.0f} (system {self.ms(self.worker_system_s):.0f})"
            if self.worker_pid
            else ""
        )
        return (
            f"{self.ms(self.process_s):.0f}{worker} + {self.ms(self.server_s):.0f} = {self.total_ms():.0f} ms"
        )

    def total_ms(self) -> float:
        return self.ms(self.process_s + self.worker_s + self.server_s)


async def turn(side: Side, numbers: range, concurrency: int) -> None:
    """Run `numbers` orders of one side, `concurrency` at a time, and add up what they took."""
    gate = asyncio.Semaphore(concurrency)

    async def bounded(n: int) -> None:
        async with gate:
            await side.one(n)

    before, worker_before, started = cpu_seconds(), process_cpu(side.worker_pid), time.perf_counter()
    await asyncio.gather(*(bounded(n) for n in numbers))
    side.wall += time.perf_counter() - started
    after, worker_after = cpu_seconds(), process_cpu(side.worker_pid)
    side.orders += len(numbers)
    side.process_s += after[0] - before[0]
    side.server_s += after[1] - before[1]
    side.worker_s += sum(worker_after) - sum(worker_before)
    side.worker_system_s += worker_after[1] - worker_before[1]


def process_cpu(pid: int | None) -> tuple[float, float]:
    """CPU seconds a process has used so far, in user space and in the kernel (0 for none)."""
    if pid is None:
        return 0.0, 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


@contextlib.asynccontextmanager
async def docket_side(settings, count: int, one_process: bool) -> AsyncIterator[Side]:  # type: ignore[no-untyped-def]
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
            yield Side(one, None if one_process else process.pid)
        finally:
            if one_process:
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
            else:
                stop(process, grace=30)


@contextlib.asynccontextmanager
async def bare_side(client: Client, one_process: bool) -> AsyncIterator[Side]:
    """The runner docket's worker uses, in a process of its own as docket's: the yardstick pays what
    docket pays to the SDK."""
    queue = f"bare-{uuid.uuid4().hex[:6]}"

    async def one(n: int) -> None:
        start = WithStartWorkflowOperation(
            Bare.run, id=f"bare-{queue}-{n}", task_queue=queue, id_conflict_policy=USE_EXISTING
        )
        await client.execute_update_with_start_workflow(Bare.placement, start_workflow_operation=start)
        handle = await start.workflow_handle()
        for name in ("confirm", *MOVES):
            await handle.execute_update(Bare.move, name)

    if one_process:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[Bare],
            activities=[nothing],
            workflow_runner=runner_for(client, packages=["bench.bare"]),  # passed through, as docket's
        ):
            await one(-1)
            yield Side(one, None)
        return
    address = client.service_client.config.target_host
    process = subprocess.Popen([sys.executable, "-m", "bench.bare", address, queue])
    try:
        await one(-1)
        yield Side(one, process.pid)
    finally:
        stop(process, grace=30)


async def main(count: int, concurrency: int, rounds: int, chunk: int, one_process: bool) -> None:
    from docket.connect import temporal_client

    where = "in this process" if one_process else "in a process of its own"
    print(
        f"orders end to end: {count} orders a side, {concurrency} at a time, in turns of {chunk};"
        f" 6 activities and 6 updates each; each worker {where}"
    )
    print(
        f"  creating a file on this disk takes {file_creation_us():.0f} us of CPU now (docket makes one per mail)"
    )
    activities = 2 * (count + 1) * 6  # both sides, the warm-ups included
    parts = "this process + dev server" if one_process else "client + worker + dev server"
    ratios = []
    for n in range(1, rounds + 1):
        with embedded() as settings:  # a fresh dev server and store for every round
            client = await temporal_client(settings)
            async with (
                docket_side(settings, count, one_process) as docket,
                bare_side(client, one_process) as bare,
            ):
                for first in range(0, count, chunk):
                    numbers = range(first, min(first + chunk, count))
                    for side in (docket, bare) if (first // chunk) % 2 == 0 else (bare, docket):
                        await turn(side, numbers, concurrency)
            eager = eager_activities(settings)
        ratios.append(docket.rate / bare.rate)
        print(
            f"  round {n}: docket {docket.rate:5.1f} orders/s, bare {bare.rate:5.1f} workflows/s,"
            f" docket/bare {docket.rate / bare.rate:.2f}\n"
            f"    CPU per order, {parts}: docket {docket.cpu()}, bare {bare.cpu()}"
            f" (ratio {bare.total_ms() / docket.total_ms():.2f})\n"
            f"    activities handed over eagerly: {eager}/{activities}"
        )
    print(f"  docket/bare median of {rounds} = {statistics.median(ratios):.2f}  (target >= 0.80)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=25, help="orders a side runs in each of its turns")
    parser.add_argument(
        "--one-process", action="store_true", help="each worker in this process, beside the client"
    )
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.concurrency, args.rounds, args.chunk, args.one_process))
