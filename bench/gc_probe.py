"""`docket worker` with its garbage collections recorded, for the benchmarks that run the worker in
a process of their own: one line per collection in the file DOCKET_BENCH_GC_LOG names (wall clock,
generation, pause in milliseconds).

    DOCKET_BENCH_GC_LOG=gc.log python -m bench.gc_probe worker
"""

from __future__ import annotations

import gc
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def record(path: str) -> None:
    log = open(path, "a", buffering=1)  # line by line, read while the worker runs
    started = 0.0

    def collecting(phase: str, info: dict[str, Any]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
            return
        pause = 1000 * (time.perf_counter() - started)
        log.write(f"{time.time():.3f} {info['generation']} {pause:.2f}\n")

    gc.callbacks.append(collecting)


@dataclass
class Pauses:
    collections: list[int]  # per generation
    total_ms: float
    longest_ms: float
    longest_full_ms: float

    def __str__(self) -> str:
        young, middle, full = self.collections
        return (
            f"worker GC: {young}/{middle}/{full} collections (generation 0/1/2), "
            f"{self.total_ms:.0f} ms in all, longest {self.longest_ms:.0f} ms"
            + (f" (full: {self.longest_full_ms:.0f} ms)" if full else "")
        )


def pauses(path: Path, start: float, end: float) -> Pauses:
    """The collections recorded in `path` between two wall-clock moments."""
    collections, total, longest, longest_full = [0, 0, 0], 0.0, 0.0, 0.0
    if path.exists():
        for line in path.read_text().splitlines():
            at, generation, pause = line.split()
            if start <= float(at) <= end:
                g, ms = int(generation), float(pause)
                collections[g] += 1
                total += ms
                longest = max(longest, ms)
                if g == 2:
                    longest_full = max(longest_full, ms)
    return Pauses(collections, total, longest, longest_full)


if __name__ == "__main__":
    record(os.environ["DOCKET_BENCH_GC_LOG"])
    from docket.cli import main

    sys.argv = ["docket", *sys.argv[1:]]
    main()
