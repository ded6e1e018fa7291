"""Latency from stock received to back order allocated, on the embedded defaults.

N orders wait for one unit each; then units arrive one receipt at a time, and for each the clock
runs from the receipt call until the oldest waiting order's delivery is allocated in the store.

    python -m bench.backorder_latency [--orders 100]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bench.harness import embedded, order, percentile, store
from docket.models.lifecycles import DeliveryState
from docket.models.schemas import ConfirmPayment, ReceiveStock
from docket.runtime import run_worker
from docket.store import queries


async def main(count: int) -> None:
    with embedded() as settings:
        async with store(settings, on_hand=0, backorder=True) as running:
            worker = asyncio.create_task(run_worker(running))
            docket = running.docket
            op = await docket.operator("op")
            for n in range(count):
                await docket.place_order(op, order(n))
                await docket.confirm_payment(op, ConfirmPayment(order_id=f"b-{n}", operator_id="op"))
            latencies = []
            for n in range(count):
                started = time.perf_counter()
                receipt = ReceiveStock(
                    reference=f"dn-{n}", warehouse_id="main", sku="ITEM", quantity=1, operator_id="op"
                )
                received = await docket.change_stock(op, receipt)
                assert [w.order_id for w in received.woken] == [f"b-{n}"], received.woken
                while True:
                    view = await docket.look_up(lambda tx, n=n: queries.order_view(tx, f"b-{n}"))
                    if view.deliveries[0].state is DeliveryState.allocated:
                        break
                    await asyncio.sleep(0.002)
                latencies.append(time.perf_counter() - started)
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)
    ms = [x * 1000 for x in latencies]
    print(f"stock received -> back order allocated, {count} receipts, oldest waiting order woken each time")
    print(f"  p50 {percentile(ms, 50):6.0f} ms")
    print(f"  p95 {percentile(ms, 95):6.0f} ms   (target < 1000 ms)")
    print(f"  max {max(ms):6.0f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=100)
    asyncio.run(main(parser.parse_args().orders))
