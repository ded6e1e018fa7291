"""docket's own work per order, without Temporal: the activities of an order driven to completion
(place, confirm, pack, mark ready, ship, deliver) called directly, one after another in one thread,
on a SQLite store with mail into a maildir (the embedded defaults). What is left of
bench.orders' time per order once this is taken away is the Temporal SDK's and the server's.

    python -m bench.moves [--orders 300] [--runs 5]

Each run is a fresh store; the figure is the median run (the reference machine is shared: single
runs of the same code differ by a third). CPU is shown in user space and in the kernel apart: the
kernel's part is mostly the maildir's files, and on some disks it depends on what was deleted in
the last minutes (docs/performance.md).
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import sqlite3
import statistics
import time
from dataclasses import dataclass, fields

from sqlalchemy import event

from bench import harness
from bench.bare import MOVES
from bench.harness import catalogue, order
from docket.activities.mail import Mailer
from docket.activities.orders import OrderActivities
from docket.adapters.mail import MaildirTransport
from docket.adapters.payments import default_gateways
from docket.models.messages import ConfirmPaymentMove, DeliveryMove, Moved, PlaceOrderMove
from docket.models.schemas import ConfirmPayment, MoveDelivery
from docket.rendering import Renderer
from docket.store import catalogue as cat
from docket.store.engine import make_engine, make_session_factory
from docket.store.migrate import upgrade


@dataclass(frozen=True)
class Run:
    """Per order: wall time, CPU in user space and in the kernel (ms), and SQL statements."""

    wall: float
    user: float
    system: float
    statements: float


def run(orders: int) -> Run:
    scratch = harness.scratch("docket-bench-moves-")
    engine = make_engine(f"sqlite:///{scratch / 'docket.db'}")
    statements = 0

    @event.listens_for(engine, "connect")
    def count_statements(connection: sqlite3.Connection, _: object) -> None:
        def count(_: str) -> None:  # every statement SQLite runs, BEGIN and COMMIT included
            nonlocal statements
            statements += 1

        connection.set_trace_callback(count)

    upgrade(engine)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        cat.load(session, catalogue(orders * 2), dt.datetime.now(dt.UTC))
    mailer = Mailer(sessions, Renderer("docket@bench.test"), MaildirTransport(scratch / "mail"))
    activities = OrderActivities(sessions, mailer, default_gateways("http://127.0.0.1:9"))

    def one(n: int) -> None:
        cmd = order(n).model_copy(update={"operator_id": "op"})
        at, wid = dt.datetime.now(dt.UTC), f"order-{cmd.order_id}"
        placed = activities.place_order(
            PlaceOrderMove(move_id=f"{wid}/1", at=at, deliver_mail=True, command=cmd)
        )
        assert isinstance(placed, Moved)
        flow = placed.view.payment_flow  # the workflow passes it to each delivery move
        confirm = ConfirmPayment(order_id=cmd.order_id, operator_id="op")
        activities.confirm_payment(
            ConfirmPaymentMove(move_id=f"{wid}/2", at=at, deliver_mail=True, command=confirm)
        )
        for k, trigger in enumerate(MOVES, start=3):
            move = MoveDelivery(order_id=cmd.order_id, operator_id="op", delivery_no=1, trigger=trigger)
            activities.move_delivery(
                DeliveryMove(move_id=f"{wid}/{k}", at=at, deliver_mail=True, command=move, payment_flow=flow)
            )

    one(-1)  # warm up
    statements = 0
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for n in range(orders):
        one(n)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    counted = statements
    engine.dispose()
    return Run(
        wall=1000 * wall / orders,
        user=1000 * (after.ru_utime - before.ru_utime) / orders,
        system=1000 * (after.ru_stime - before.ru_stime) / orders,
        statements=counted / orders,
    )


def main(orders: int, runs: int) -> None:
    print(f"docket's own work: {orders} orders driven to completion by calling the activities, {runs} runs")
    print(
        f"  creating a file on this disk takes {harness.file_creation_us():.0f} us of CPU now (one per mail)"
    )
    results = []
    for n in range(1, runs + 1):
        result = run(orders)
        results.append(result)
        print(f"  run {n}: {_line(result)}")
    median = Run(*(statistics.median(getattr(r, f.name) for r in results) for f in fields(Run)))
    print(f"  median: {_line(median)}")


def _line(r: Run) -> str:
    return (
        f"{r.wall:5.1f} ms/order wall, CPU {r.user:5.1f} ms user + {r.system:4.1f} ms system,"
        f" {r.statements:.0f} statements/order"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    main(args.orders, args.runs)
