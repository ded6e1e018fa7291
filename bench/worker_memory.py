"""Peak memory of a `docket worker` process with many orders open and waiting, on the embedded
defaults. The worker runs as its own process; its peak RSS (VmHWM) is read from /proc.

    python -m bench.worker_memory [--orders 5000] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from bench.harness import embedded, order, store, worker_process


def memory_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not found for process {pid}")


async def main(count: int, concurrency: int) -> None:
    with embedded() as settings:
        async with store(settings, on_hand=count) as running:
            worker = worker_process(settings)
            try:
                await asyncio.sleep(2)
                idle = memory_kb(worker.pid, "VmRSS")
                docket = running.docket
                op = await docket.operator("op")
                gate = asyncio.Semaphore(concurrency)

                async def place(n: int) -> None:
                    async with gate:
                        await docket.place_order(op, order(n))

                started = time.perf_counter()
                await asyncio.gather(*(place(n) for n in range(count)))
                elapsed = time.perf_counter() - started
                peak, now = memory_kb(worker.pid, "VmHWM"), memory_kb(worker.pid, "VmRSS")
            finally:
                worker.terminate()
                worker.wait(timeout=30)
    print(f"worker memory with {count} orders open and waiting (each on its payment-deadline timer)")
    print(f"  placed in {elapsed:.0f} s ({count / elapsed:.0f} orders/s, {concurrency} at a time)")
    print(f"  RSS idle {idle / 1024:6.0f} MB")
    print(f"  RSS now  {now / 1024:6.0f} MB")
    print(f"  RSS peak {peak / 1024:6.0f} MB   (target < 400 MB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.concurrency))
