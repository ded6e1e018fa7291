"""What every benchmark needs: the embedded defaults (Temporal dev server persisting to SQLite with
WAL, a SQLite store) in a scratch directory, the catalogue, and the commands."""

from __future__ import annotations

import atexit
import contextlib
import datetime as dt
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path

from docket.models.access import Role
from docket.models.schemas import Address, OrderLineIn, PlaceOrder
from docket.runtime import Running, connected, dev_server
from docket.settings import Settings
from docket.store import catalogue as cat

ADDRESS = Address(name="Bench", line1="1 Loop Rd", city="Berlin", postcode="10115", country="DE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_METRICS: dict[str, str] = {}  # a dev server's address: where it serves its metrics
_SCRATCH: list[tempfile.TemporaryDirectory[str]] = []
SCRATCH_BASE = Path(
    os.environ.get("DOCKET_BENCH_DIR", Path(__file__).resolve().parent.parent / "var" / "bench")
)


def scratch(prefix: str = "docket-bench-") -> Path:
    """A scratch directory under var/bench (DOCKET_BENCH_DIR), where the embedded defaults keep
    their files, not in /tmp, where other processes create and delete files all the time. It is
    removed when the benchmark ends, not when the round that used it does. On an ext4 file
    system without a journal, creating a file passes over the inodes freed in the last minutes:
    an order whose round began right after the last round deleted its thousands of mails spent
    11 ms more of system time on its mail (docs/performance.md)."""
    if not _SCRATCH:
        atexit.register(lambda: [kept.cleanup() for kept in _SCRATCH])
    SCRATCH_BASE.mkdir(parents=True, exist_ok=True)
    _SCRATCH.append(tempfile.TemporaryDirectory(prefix=prefix, dir=SCRATCH_BASE))
    return Path(_SCRATCH[-1].name)


def file_creation_us(count: int = 200) -> float:
    """What creating a small file costs on this disk now, in microseconds of CPU (the maildir makes
    one per mail). On an ext4 file system without a journal it passes over the inodes freed in the
    last minutes: about 20 us on a quiet disk, ten or twenty times that after a test run deleted
    thousands of files. The files stay until the benchmark ends (deleting them would add to that)."""
    folder = scratch("docket-bench-disk-")
    data = b"x" * 3000
    started = time.process_time()
    for n in range(count):
        fd = os.open(folder / f"{n}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.write(fd, data)
        os.close(fd)
    return 1e6 * (time.process_time() - started) / count


@contextlib.contextmanager
def embedded() -> Iterator[Settings]:
    """A dev server and a store of their own, in a scratch directory."""
    var = scratch()
    metrics = free_port()
    with dev_server(var, port=free_port(), ui_port=free_port(), metrics_port=metrics) as address:
        _METRICS[address] = f"http://127.0.0.1:{metrics}/metrics"
        yield Settings(var_dir=var, temporal_address=address, task_queue="bench")


def eager_activities(settings: Settings) -> int:
    """How many activities the embedded dev server has so far handed to a worker eagerly, with
    the answer to the workflow task that scheduled them, instead of through its task queue."""
    time.sleep(2)  # the server publishes its counters a moment late
    with urllib.request.urlopen(_METRICS[settings.temporal_address]) as answer:
        lines = answer.read().decode().splitlines()
    return int(
        sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith("activity_eager_execution"))
    )


def cpu_seconds() -> tuple[float, float, float]:
    """CPU seconds used so far by this process, by the dev server it started, and by the other
    processes it started (a worker of its own), read from /proc: a benchmark's two cores are shared
    between them, so where the CPU goes says more than the rate alone."""
    ticks, me, server, others = os.sysconf("SC_CLK_TCK"), os.getpid(), 0, 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            name, fields = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:  # gone meanwhile
            continue
        fields = fields.split()
        if int(fields[1]) == me:  # its parent; utime and stime follow
            used = int(fields[11]) + int(fields[12])
            if name.endswith("(temporal"):
                server += used
            else:
                others += used
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime, server / ticks, others / ticks


def worker_gc_log(settings: Settings) -> Path:
    """Where `worker_process` records the worker's garbage collections (bench.gc_probe)."""
    return settings.var_dir / "worker-gc.log"


def worker_process(settings: Settings, gc_log: bool = True) -> subprocess.Popen[bytes]:
    """`docket worker` in a process of its own, as deployed beside `docket api`, on `settings`;
    with `gc_log`, its garbage collections recorded in `worker_gc_log(settings)`."""
    env = {
        **os.environ,
        "DOCKET_VAR_DIR": str(settings.var_dir),
        "DOCKET_DATABASE_URL": settings.database,
        "DOCKET_TEMPORAL_ADDRESS": settings.temporal_address,
        "DOCKET_TASK_QUEUE": settings.task_queue,
        "DOCKET_SANDBOX_URL": settings.sandbox_url,
    }
    if gc_log:
        env["DOCKET_BENCH_GC_LOG"] = str(worker_gc_log(settings))
        command = [sys.executable, "-m", "bench.gc_probe", "worker"]
    else:
        command = [str(Path(sys.executable).parent / "docket"), "worker"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def catalogue(on_hand: int, backorder: bool = False) -> cat.Catalogue:
    return cat.Catalogue(
        warehouses=[cat.WarehouseIn(warehouse_id="main", name="Main")],
        shops=[
            cat.ShopIn(
                shop_id="shop", name="Shop", return_days=0, warehouses=["main"], admin_emails=["a@x.test"]
            )
        ],
        products=[cat.ProductIn(sku="ITEM", name="Item", backorder_allowed=backorder)],
        customers=[cat.CustomerIn(customer_id="c", name="C", email="c@x.test")],
        operators=[cat.OperatorIn(operator_id="op", name="Op", roles=[Role.admin], token="bench")],
        stock=[cat.OpeningStock(warehouse_id="main", sku="ITEM", on_hand=on_hand)],
    )


@contextlib.asynccontextmanager
async def store(settings: Settings, on_hand: int, backorder: bool = False) -> AsyncIterator[Running]:
    async with connected(settings, migrate=True) as running:
        with running.docket.sessions.begin() as session:
            cat.load(session, catalogue(on_hand, backorder), dt.datetime.now(dt.UTC))
        yield running


def order(n: int, quantity: int = 1) -> PlaceOrder:
    return PlaceOrder(
        order_id=f"b-{n}",
        shop_id="shop",
        customer_id="c",
        shipping_address=ADDRESS,
        lines=[OrderLineIn(sku="ITEM", quantity=quantity, unit_price=Decimal("1.00"), currency="EUR")],
    )


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]
