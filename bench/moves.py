"""docket's own work per order, without Temporal: the activities of an order driven to completion
(place, confirm, pack, mark ready, ship, deliver) called directly, one after another in one thread,
on a SQLite store with mail into a maildir (the embedded defaults). What is left of
bench.orders' time per order once this is taken away is the Temporal SDK's and the server's.

    python -m bench.moves [--orders 300] [--runs 5]

Each run is a fresh store; the figure is the median run (the reference machine is shared: single
runs of the same code differ by a third).
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import event

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


def run(orders: int) -> tuple[float, float, float]:
    """(wall ms, CPU ms, statements) per order."""
    with tempfile.TemporaryDirectory(prefix="docket-bench-moves-") as scratch:
        engine = make_engine(f"sqlite:///{Path(scratch) / 'docket.db'}")
        upgrade(engine)
        sessions = make_session_factory(engine)
        with sessions.begin() as session:
            cat.load(session, catalogue(orders * 2), dt.datetime.now(dt.UTC))
        mailer = Mailer(sessions, Renderer("docket@bench.test"), MaildirTransport(Path(scratch) / "mail"))
        activities = OrderActivities(sessions, mailer, default_gateways("http://127.0.0.1:9"))
        statements = 0

        @event.listens_for(engine, "before_cursor_execute")
        def count(*_: object) -> None:
            nonlocal statements
            statements += 1

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
                    DeliveryMove(
                        move_id=f"{wid}/{k}", at=at, deliver_mail=True, command=move, payment_flow=flow
                    )
                )

        one(-1)  # warm up
        statements = 0
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for n in range(orders):
            one(n)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        engine.dispose()
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return 1000 * wall / orders, 1000 * cpu / orders, statements / orders


def main(orders: int, runs: int) -> None:
    print(f"docket's own work: {orders} orders driven to completion by calling the activities, {runs} runs")
    results = []
    for n in range(1, runs + 1):
        wall, cpu, statements = run(orders)
        results.append((wall, cpu, statements))
        print(
            f"  run {n}: {wall:5.1f} ms/order wall, {cpu:5.1f} ms/order CPU, {statements:.0f} statements/order"
        )
    wall, cpu, statements = (statistics.median(r[i] for r in results) for i in range(3))
    print(f"  median: {wall:.1f} ms/order wall, {cpu:.1f} ms/order CPU, {statements:.0f} statements/order")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    main(args.orders, args.runs)
