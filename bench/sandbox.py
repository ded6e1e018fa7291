"""What building a workflow's sandbox costs: the worker builds one for every workflow it starts or
takes back from its history. docket's order workflow against the bare one of bench.orders, each
built `--count` times in turn, in the runner docket's worker uses (shared: the workflow modules
passed through) and in the checked one (imported afresh into each sandbox), with no other load.

    python -m bench.sandbox [--count 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from temporalio.worker import WorkflowRunner
from temporalio.workflow import _Definition

from bench.bare import Bare
from docket.worker import CodecFreeRunner, restrictions_for
from docket.workflows.order import OrderWorkflow


def per_instance(runner: WorkflowRunner, workflow: type, count: int) -> float:
    """Milliseconds per sandbox: `prepare_workflow` builds one, as starting a workflow does."""
    defn = _Definition.must_from_class(workflow)
    runner.prepare_workflow(defn)  # the first one imports what every later one shares
    started = time.perf_counter()
    for _ in range(count):
        runner.prepare_workflow(defn)
    return 1000 * (time.perf_counter() - started) / count


async def main(count: int, rounds: int) -> None:
    packages = ["docket.workflows", "bench.bare"]
    runners = {
        "shared": CodecFreeRunner(restrictions_for(checked=False, packages=packages)),
        "checked": CodecFreeRunner(restrictions_for(checked=True, packages=packages)),
    }
    print(f"a sandbox per workflow: {count} of each, {rounds} rounds")
    for mode, runner in runners.items():
        docket, bare = [], []
        for n in range(1, rounds + 1):
            docket.append(per_instance(runner, OrderWorkflow, count))
            bare.append(per_instance(runner, Bare, count))
            print(f"  {mode} round {n}: docket's order workflow {docket[-1]:.2f} ms, bare {bare[-1]:.2f} ms")
        median_docket, median_bare = statistics.median(docket), statistics.median(bare)
        print(f"  {mode} median: docket {median_docket:.2f} ms, bare {median_bare:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.count, arguments.rounds))
