"""Gateway callbacks per second through `POST /payments/sandbox/callback` to a recorded state
change, with p50/p99 latency, on the embedded defaults (dev server, SQLite store, the API in this
process, `docket worker` in a process of its own; with --one-process, in this one). The load comes
from another process on loopback (bench.callback_load). For each phase it also prints the worker's
garbage collections while the load ran (bench.gc_probe): how many, and the longest pause.

Each callback settles one prepaid order held for review (`waiting_payment` -> `in_progress`,
allocation included): authenticated, stored, handed to the order's workflow as an update, applied
in one local activity (see docs/performance.md), answered.

    python -m bench.callbacks [--orders 300] [--rate 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
from pathlib import Path

import uvicorn
from sqlalchemy import select, update

from bench.gc_probe import pauses
from bench.harness import (
    cpu_seconds,
    embedded,
    free_port,
    order,
    percentile,
    store,
    worker_gc_log,
    worker_process,
)
from docket.api.app import create_app
from docket.models.lifecycles import OrderState
from docket.runtime import run_worker, settle_heap
from docket.sandbox import create_sandbox
from docket.store.tables import Order, PaymentTransaction, Shop

SECRET = "bench-secret"
TARGET_P99_MS = 250


async def place_held(docket, first: int, count: int) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """`count` prepaid orders held for review; the callback facts that will settle them."""
    op = await docket.operator("op")
    gate = asyncio.Semaphore(20)

    async def one(n: int) -> None:
        async with gate:
            cmd = order(n).model_copy(update={"payment_flow": "prepayment", "payment_token": "tok_review_ok"})
            placed = await docket.place_order(op, cmd)
            assert placed.state is OrderState.waiting_payment, placed.state

    await asyncio.gather(*(one(n) for n in range(first, first + count)))
    ids = [f"b-{n}" for n in range(first, first + count)]
    txns = await docket.read(
        lambda s: list(s.scalars(select(PaymentTransaction).where(PaymentTransaction.order_id.in_(ids))))
    )
    return [
        {
            "event_id": f"bench-{t.order_id}",
            "shop_id": "shop",
            "order_id": t.order_id,
            "operation": t.operation.value,
            "amount": str(t.amount),
            "currency": t.currency,
            "result": "ok",
            "reference": t.reference,
            "idempotency_key": t.key,
        }
        for t in txns
    ]


async def load(url: str, facts: list[dict[str, object]], rate: float) -> dict[str, object]:
    """Run the load generator in its own process while this one serves."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(facts, file)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.callback_load",
        url,
        SECRET,
        file.name,
        "--rate",
        str(rate),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    Path(file.name).unlink()
    if process.returncode:
        raise RuntimeError(f"the load generator failed: {err.decode()}")
    return json.loads(out)  # type: ignore[no-any-return]


async def main(count: int, rate: float, one_process: bool) -> None:
    sandbox_port, api_port = free_port(), free_port()
    sandbox = uvicorn.Server(
        uvicorn.Config(create_sandbox(None, SECRET), host="127.0.0.1", port=sandbox_port, log_level="error")
    )
    served = asyncio.create_task(sandbox.serve())
    with embedded() as settings:
        settings = settings.model_copy(update={"sandbox_url": f"http://127.0.0.1:{sandbox_port}"})
        async with store(settings, on_hand=2 * count) as running:
            with running.docket.sessions.begin() as session:
                session.execute(update(Shop).values(gateway_secrets={"sandbox": SECRET}))
            if one_process:
                worker = asyncio.create_task(run_worker(running))
            else:
                process = worker_process(settings)
                worker = asyncio.create_task(asyncio.to_thread(process.wait))
            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(running.docket, running.gateways),
                    host="127.0.0.1",
                    port=api_port,
                    log_level="error",
                )
            )
            settle_heap()  # as `docket api` does before it serves
            api = asyncio.create_task(server.serve())
            url = f"http://127.0.0.1:{api_port}/payments/sandbox/callback"
            print(f"callbacks: {count} orders held for review, each settled by one signed callback")
            try:
                for label, first, pace in ((f"at {rate:.0f}/s", 0, rate), ("as fast as it goes", count, 0.0)):
                    facts = await place_held(running.docket, first, count)
                    before = cpu_seconds()
                    result = await load(url, facts, pace)
                    api_ms, server_ms, worker_ms = (
                        1000 * (a - b) / count for a, b in zip(cpu_seconds(), before, strict=True)
                    )  # with --one-process, the worker's CPU is in the API's
                    latencies = [1000 * x for x in result["latencies"]]  # type: ignore[union-attr]
                    settled = await running.docket.read(
                        lambda s, ids=[f["order_id"] for f in facts]: sum(
                            1
                            for o in s.scalars(select(Order).where(Order.order_id.in_(ids)))
                            if o.state is OrderState.in_progress
                        )
                    )
                    print(
                        f"  {label:<20} {count / result['elapsed']:6.1f} callbacks/s  "  # type: ignore[operator]
                        f"p50 {statistics.median(latencies):6.1f} ms  p99 {percentile(latencies, 99):6.1f} ms  "
                        f"max {max(latencies):6.1f} ms  statuses {result['statuses']}  settled {settled}/{count}"
                    )
                    load_ms = 1000 * float(result["cpu"]) / count  # type: ignore[arg-type]
                    print(
                        f"  {'':<20} CPU per callback: API {api_ms:.1f} + worker {worker_ms:.1f} + dev server"
                        f" {server_ms:.1f} = {api_ms + worker_ms + server_ms:.1f} ms"
                        f" (and the load generator's {load_ms:.1f} ms)"
                    )
                    if not one_process:
                        start, took = float(result["started_at"]), float(result["elapsed"])  # type: ignore[arg-type]
                        print(f"  {'':<20} {pauses(worker_gc_log(settings), start, start + took)}")
                    if pace:
                        met = percentile(latencies, 99) < TARGET_P99_MS and settled == count
                        print(
                            f"  target p99 < {TARGET_P99_MS} ms at {rate:.0f}/s: {'met' if met else 'NOT met'}"
                        )
                if not one_process:
                    print(f"  {'whole run':<20} {pauses(worker_gc_log(settings), 0, float('inf'))}")
            finally:
                server.should_exit = True
                if one_process:
                    worker.cancel()
                else:
                    process.terminate()
                await asyncio.gather(worker, api, return_exceptions=True)
    sandbox.should_exit = True
    await served


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument(
        "--one-process", action="store_true", help="the worker in the API's process, as `docket dev` runs it"
    )
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.rate, args.one_process))
