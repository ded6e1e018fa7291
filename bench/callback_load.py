"""The load generator of bench.callbacks, run as a process of its own: sends signed callbacks at a
fixed rate (or as fast as it can) and prints each one's latency, and when it started by the wall
clock, as JSON.

    python -m bench.callback_load URL SECRET FACTS.json [--rate 50] [--concurrency 50]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import httpx

from docket.adapters.payments import signed_headers


async def main(url: str, secret: str, facts: list[dict[str, object]], rate: float, concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=concurrency)) as client:
        started, started_at = time.perf_counter(), time.time()

        async def one(n: int, fact: dict[str, object]) -> None:
            if rate:
                await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            async with gate:
                body = json.dumps(fact).encode()
                sent = time.perf_counter()
                response = await client.post(
                    url, content=body, headers=signed_headers(secret, int(time.time()), body)
                )
                latencies.append(time.perf_counter() - sent)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        await asyncio.gather(*(one(n, fact) for n, fact in enumerate(facts)))
        elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {"latencies": latencies, "elapsed": elapsed, "started_at": started_at, "statuses": statuses}
        )
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("secret")
    parser.add_argument("facts", type=Path)
    parser.add_argument(
        "--rate", type=float, default=50.0, help="callbacks per second; 0: as fast as possible"
    )
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(main(args.url, args.secret, json.loads(args.facts.read_text()), args.rate, args.concurrency))
