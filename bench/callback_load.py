"""The load generator of bench.callbacks, run as a process of its own: sends signed callbacks at a
fixed rate (or as fast as it can) and prints each one's latency, and when it started by the wall
clock, and the CPU it used, as JSON.

    python -m bench.callback_load URL SECRET FACTS.json [--rate 50] [--concurrency 50]

It speaks plain HTTP/1.1 over kept-alive connections of its own (`Connections`): a gateway's
load comes from another machine, and on a 2-core machine every millisecond the generator spends
is taken from docket. httpx spent 2.6-3.1 ms of CPU per callback; this, 0.7-0.9 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from pathlib import Path
from urllib.parse import urlsplit

from docket.adapters.payments import signed_headers


class Connections:
    """Kept-alive HTTP/1.1 connections to one server, each used by one request at a time (as many
    as requests in flight). Answers are read by their Content-Length (uvicorn always sends one)."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname or "127.0.0.1", parts.port or 80, parts.path
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post(self, body: bytes, headers: dict[str, str]) -> int:
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        request = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Length: {len(body)}\r\n{head}\r\n"
        )
        while True:
            reader, writer = (
                self.idle.pop() if self.idle else await asyncio.open_connection(self.host, self.port)
            )
            writer.write(request.encode() + body)
            if first := await reader.readline():
                break
            writer.close()  # the server closed it while it was idle (keep-alive timeout): send again
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        self.idle.append((reader, writer))
        return int(first.split()[1])

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def main(url: str, secret: str, facts: list[dict[str, object]], rate: float, concurrency: int) -> None:
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    connections = Connections(url)
    started, started_at = time.perf_counter(), time.time()

    async def one(n: int, fact: dict[str, object]) -> None:
        if rate:
            await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
        async with gate:
            body = json.dumps(fact).encode()
            sent = time.perf_counter()
            post = connections.post(body, signed_headers(secret, int(time.time()), body))
            status = await asyncio.wait_for(post, timeout=30)
            latencies.append(time.perf_counter() - sent)
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(one(n, fact) for n, fact in enumerate(facts)))
    elapsed = time.perf_counter() - started
    connections.close()
    used = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "latencies": latencies,
                "elapsed": elapsed,
                "started_at": started_at,
                "statuses": statuses,
                "cpu": used.ru_utime + used.ru_stime,
            }
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
