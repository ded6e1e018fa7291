"""Mails rendered and delivered to a local SMTP server per second, on the embedded defaults (SQLite
store), both ways docket sends: right after a move, in the move's activity thread (`send_now`:
the rows the move wrote, handed over from its transaction, rendered, sent over one SMTP
connection, recorded), and in the background activity (`deliver_mail`: the order's pending rows
read, then the same steps on the event loop).

    python -m bench.mail [--orders 300] [--concurrency 10]

The SMTP server (aiosmtpd, discarding what it accepts) runs in a process of its own on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sqlalchemy import func, select
from temporalio.testing import ActivityEnvironment

from bench import harness
from bench.harness import catalogue, free_port, order
from docket.activities.mail import MailActivities, Mailer
from docket.adapters.mail import SmtpTransport
from docket.models.messages import DeliverMail
from docket.rendering import Renderer
from docket.runtime import port_open
from docket.store import catalogue as cat
from docket.store import moves, outbox
from docket.store.direct import reading, writing
from docket.store.engine import make_engine, make_session_factory
from docket.store.migrate import upgrade
from docket.store.outbox import Letter
from docket.store.tables import OutboxRow

TARGET = 200


def smtp_server(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{port}", "-c", "aiosmtpd.handlers.Sink"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not port_open("127.0.0.1", port):
        if time.monotonic() > deadline:
            raise RuntimeError("the SMTP server did not start")
        time.sleep(0.05)
    return process


async def main(orders: int, concurrency: int) -> None:
    scratch = harness.scratch("docket-bench-mail-")
    engine = make_engine(f"sqlite:///{Path(scratch) / 'docket.db'}")
    upgrade(engine)
    sessions = make_session_factory(engine)
    now = dt.datetime.now(dt.UTC)
    with sessions.begin() as session:
        cat.load(session, catalogue(on_hand=2 * orders), now)
    handed: dict[str, list[Letter]] = {}  # the first half: written as a move writes its mail
    for n in range(2 * orders):  # placing an order writes three mails (customer, admin twice)
        command = order(n).model_copy(update={"operator_id": "op"})
        with writing(engine) as tx:
            if n < orders:
                outbox.hand_over(tx)
            moves.place_order(tx, command, f"m{n}", now)
        if n < orders:
            handed[command.order_id] = outbox.written_letters(tx)
    with reading(engine) as tx:
        letters = [*itertools.chain(*handed.values()), *outbox.pending(tx, limit=orders * 20)]
    mails = len(letters) // 2

    renderer = Renderer("docket@bench.test")
    started = time.perf_counter()
    for letter in letters:
        renderer.compose(
            letter, renderer.render(letter.shop_id, letter.kind, letter.template_key, letter.data)
        )
    composed = mails / (time.perf_counter() - started)

    port = free_port()
    server = smtp_server(port)
    try:
        mailer = Mailer(sessions, renderer, SmtpTransport("127.0.0.1", port))
        with ThreadPoolExecutor(concurrency) as threads:  # as the worker's activity threads
            started = time.perf_counter()
            list(threads.map(lambda item: mailer.send_now(*item), handed.items()))
            inline = time.perf_counter() - started

        activities = MailActivities(mailer)
        env = ActivityEnvironment()
        gate = asyncio.Semaphore(concurrency)

        async def deliver(n: int) -> None:
            async with gate:
                await env.run(activities.deliver_mail, DeliverMail(order_id=f"b-{n}"))

        started = time.perf_counter()
        await asyncio.gather(*(deliver(n) for n in range(orders, 2 * orders)))
        background = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=10)
    with sessions() as session:
        sent = session.scalar(select(func.count()).where(OutboxRow.state == "sent")) or 0
    engine.dispose()

    print(
        f"mail: {orders} orders and {mails} mails each way, {concurrency} orders at a time, SMTP on loopback"
    )
    print(
        f"  rendered and composed alone:              {2 * mails / composed:6.2f} s, {composed:6.0f} mails/s"
    )
    rates = []
    for way, elapsed in (
        ("after the move (send_now)", inline),
        ("in the background (deliver_mail)", background),
    ):
        rates.append(mails / elapsed)
        print(f"  sent and recorded {way:<33} {elapsed:6.2f} s, {mails / elapsed:6.0f} mails/s")
    met = min(rates) >= TARGET and sent == 2 * mails
    print(
        f"  {sent} of {2 * mails} recorded as sent; target >= {TARGET} mails/s: {'met' if met else 'NOT met'}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.orders, args.concurrency))
