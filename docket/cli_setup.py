"""`docket db|catalogue|worker|api|dev|demo`: set-up and the long-running processes."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.text import Text
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from docket.cli import (
    EXIT,
    EXIT_REFUSED,
    EXIT_UNAVAILABLE,
    T,
    _validation_text,
    app,
    catalogue_app,
    db_app,
    err,
    fail,
    out,
    read_text,
    run,
    settings,
    stop_on_sigterm,
)
from docket.models.errors import DocketError, StoreNotReady
from docket.runtime import Running, connected
from docket.settings import Settings
from docket.store.tables import OperatorRow


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the Alembic migrations (the only way the schema is created or changed)."""
    from docket.store.engine import make_engine
    from docket.store.migrate import cannot_reach, current_revision, upgrade

    config = settings()
    if config.database.startswith("sqlite"):
        config.var_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(config.database)
    try:
        upgrade(engine)
        out.print(f"database at revision {current_revision(engine)}")
    except OperationalError as error:
        fail(str(cannot_reach(engine, error)), EXIT_UNAVAILABLE)
    finally:
        engine.dispose()


@catalogue_app.command("load")
def catalogue_load(
    path: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="The catalogue, a JSON file (see docs/catalogue.example.json)."),
    ],
) -> None:
    """Load shops, warehouses, products, customers, operators and opening stock from JSON: what the
    store lacks is created, what it has is brought to what the file says, the rest is left alone.
    Prints the API token of each operator it creates (only its hash is stored)."""
    from docket.store import catalogue

    try:
        loaded = catalogue.Catalogue.model_validate_json(read_text(path))
    except ValidationError as error:
        fail(_validation_text(error), 2)
    done = _in_store(
        lambda session: catalogue.load(session, loaded, dt.datetime.now(dt.UTC)), "nothing loaded"
    )
    summary = "; ".join(
        f"{what} {', '.join(f'{kind}: {len(ids)}' for kind, ids in by_kind.items())}"
        for what, by_kind in (("created", done.created), ("changed", done.changed))
        if by_kind
    )
    err.print(summary or "nothing to change: the store already holds this catalogue")
    out.print_json(done.model_dump_json())


@catalogue_app.command("token")
def catalogue_token(
    operator_id: Annotated[str, typer.Argument(help="The operator's id.")],
) -> None:
    """Give an operator a new API token (printed once); the old one stops working at once."""
    from docket.store import catalogue

    token = _in_store(lambda session: catalogue.reissue_token(session, operator_id), "no token issued")
    out.print_json(json.dumps({"api_tokens": {operator_id: token}}))


def _in_store(work: Callable[[Session], T], refused: str) -> T:
    """One transaction on the store the settings name, for the set-up commands that need no
    Temporal; a refusal or a store that is not ready ends the command, saying so."""
    from docket.store.engine import make_engine, make_session_factory
    from docket.store.migrate import require_current

    engine = make_engine(settings().database)
    try:
        require_current(engine)
        with make_session_factory(engine).begin() as session:
            return work(session)
    except StoreNotReady as error:
        fail(f"{refused}: {error}", EXIT_UNAVAILABLE)
    except DocketError as error:
        fail(str(error), EXIT.get(error.kind, EXIT_REFUSED))
    except IntegrityError as error:  # written by someone else meanwhile: run it again
        fail(f"{refused}: the store changed meanwhile ({error.orig})", EXIT_REFUSED)
    finally:
        engine.dispose()
    raise AssertionError("unreachable")


@app.command()
def worker() -> None:
    """Run workflows and activities (as many side by side as the load wants)."""
    from docket.runtime import run_worker

    async def job(running: Running) -> None:
        err.print(f"worker on task queue {running.docket.task_queue} at {settings().temporal_address}")
        await run_worker(running)

    _until_interrupted(lambda: run(job, lazy=False, serve=True))


@app.command()
def api() -> None:
    """Serve the HTTP API (DOCKET_API_HOST, DOCKET_API_PORT)."""
    from docket.runtime import serve_api

    config = settings()

    async def job(running: Running) -> None:
        err.print(f"API on http://{config.api_host}:{config.api_port} (OpenAPI at /docs)")
        await serve_api(running, config.api_host, config.api_port)

    _until_interrupted(lambda: run(job, lazy=False, serve=True))


@app.command()
def dev() -> None:
    """The Temporal dev server (Web UI on :8233), the worker, the API and the sandbox card gateway
    together; Ctrl-C stops all."""
    import uvicorn

    from docket.runtime import dev_server, run_forever, run_worker, serve_api
    from docket.sandbox import create_sandbox

    config = settings()
    with dev_server(config.var_dir) as address:
        config = config.model_copy(update={"temporal_address": address})

        async def go() -> None:
            stop_on_sigterm()
            async with connected(config, migrate=True) as running:
                out.print(f"Temporal  {address}  (Web UI http://127.0.0.1:8233)")
                out.print(f"API       http://{config.api_host}:{config.api_port}  (OpenAPI /docs)")
                out.print(f"database  {config.database}")
                out.print(f"mail      {_mail_destination(config)}")
                out.print(f"gateway   sandbox at {config.sandbox_url} (secret from DOCKET_SANDBOX_SECRET)")
                out.print("worker    running; Ctrl-C stops everything")
                if not await running.docket.read(
                    lambda s: s.scalar(select(func.count()).select_from(OperatorRow))
                ):
                    out.print(
                        Text.assemble(
                            ("no operators yet:", "yellow"),
                            " docket catalogue load docs/catalogue.example.json",
                        )
                    )
                callback = f"http://{config.api_host}:{config.api_port}/payments/sandbox/callback"
                sandbox = uvicorn.Server(
                    uvicorn.Config(
                        create_sandbox(callback, config.sandbox_secret),
                        host="127.0.0.1",
                        port=int(config.sandbox_url.rsplit(":", 1)[1].split("/")[0]),
                        log_level="warning",
                        lifespan="off",
                    )
                )
                await run_forever(
                    run_worker(running), serve_api(running, config.api_host, config.api_port), sandbox.serve()
                )

        _until_interrupted(lambda: asyncio.run(go()))


@app.command("sandbox-gateway")
def sandbox_gateway(
    port: Annotated[
        int, typer.Option(help="Port to listen on (DOCKET_SANDBOX_URL points docket here).")
    ] = 8099,
    callback_url: Annotated[
        str, typer.Option(help="Where to send callbacks: docket's /payments/sandbox/callback.")
    ] = "http://127.0.0.1:8000/payments/sandbox/callback",
    secret: Annotated[
        str,
        typer.Option(
            envvar="DOCKET_SANDBOX_SECRET", help="Callback signing secret (the shops' sandbox secret)."
        ),
    ] = "sandbox-secret",
    delay: Annotated[float, typer.Option(min=0, help="Seconds before a callback is sent.")] = 0.5,
    copies: Annotated[int, typer.Option(min=1, max=10, help="Send every callback this many times.")] = 1,
    shuffle: Annotated[bool, typer.Option(help="Send callbacks out of order.")] = False,
) -> None:
    """A simulated card gateway with its own books, calling docket back with signed callbacks.
    Payment tokens: tok_ok, tok_declined, tok_review_ok, tok_review_fail, tok_late_fail,
    tok_refund_fail, tok_capture_fail, tok_batch (docs/payments.md says what each does)."""
    import uvicorn

    from docket.sandbox import create_sandbox

    err.print(f"sandbox gateway on http://127.0.0.1:{port}, calling back {callback_url}")
    app_ = create_sandbox(callback_url, secret, delay=delay, copies=copies, shuffle=shuffle)
    _until_interrupted(lambda: uvicorn.run(app_, host="127.0.0.1", port=port, log_level="warning"))


@app.command()
def demo() -> None:
    """Seed a catalogue and drive orders of every kind through their lifecycles, on the embedded defaults."""
    from docket.demo import run_demo

    run_demo(settings(), out)


def _mail_destination(config: Settings) -> str:
    if config.mail_transport == "smtp":
        return f"SMTP {config.smtp_host}:{config.smtp_port} ({config.smtp_security.value})"
    return f"maildir {config.mail_folder} (one file per mail under new/)"


def _until_interrupted(job: Callable[[], Any]) -> None:
    """Run until Ctrl-C or SIGTERM (`stop_on_sigterm`), which stop it the same way: the worker
    stops polling and reports the activities it holds before it exits, instead of leaving them to
    time out and run again elsewhere."""
    try:
        job()  # returns when its servers heard the signal first and ended on their own
    except (KeyboardInterrupt, asyncio.CancelledError):
        pass
    err.print("stopped")
