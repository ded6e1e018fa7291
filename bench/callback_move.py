"""The callback's move alone, without Temporal or HTTP: the `apply_payment_callback` activity
called directly on prepaid orders held for review, one after another in one thread, on a SQLite
store with mail into a maildir (the embedded defaults).

    python -m bench.callback_move save DIR [--orders 301]   # place the orders, keep store and facts
    python -m bench.callback_move apply DIR [--count 300]   # apply them to a copy of the store

`save` places the orders through the sandbox gateway (served in this process) and keeps the store
and the callbacks' facts in DIR. `apply` settles the first `--count` of them (after one more to
warm up) on a copy, so it can run again and again on the same store, and prints the time, the CPU
and the statements per callback. The machine's speed swings between runs; for a comparison of
two versions of the code, count instructions instead, which repeat to within a percent:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python -m bench.callback_move apply DIR --count 100      # and --count 0: the difference
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn
from sqlalchemy import Engine, event, func, select, update

from bench import harness
from bench.harness import catalogue, free_port, order
from docket.activities.mail import Mailer
from docket.activities.orders import OrderActivities
from docket.adapters.mail import MaildirTransport
from docket.adapters.payments import default_gateways
from docket.models.lifecycles import OrderState
from docket.models.messages import ChargeMove, PaymentCallbackMove, PlaceOrderMove
from docket.models.payments import CallbackFact, Result
from docket.models.schemas import PaymentFlow
from docket.rendering import Renderer
from docket.sandbox import create_sandbox
from docket.store import catalogue as cat
from docket.store.engine import SessionFactory, make_engine, make_session_factory
from docket.store.migrate import upgrade
from docket.store.tables import PaymentCallback, PaymentTransaction, Shop


def activities(sessions: SessionFactory, folder: Path, gateway_url: str) -> OrderActivities:
    mailer = Mailer(sessions, Renderer("docket@bench.test"), MaildirTransport(folder / "mail"))
    return OrderActivities(sessions, mailer, default_gateways(gateway_url))


def save(folder: Path, orders: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "docket.db").unlink(missing_ok=True)
    port = free_port()
    gateway = uvicorn.Server(
        uvicorn.Config(create_sandbox(None, "bench"), host="127.0.0.1", port=port, log_level="error")
    )
    threading.Thread(target=gateway.run, daemon=True).start()
    while not gateway.started:
        time.sleep(0.05)
    engine = make_engine(f"sqlite:///{folder / 'docket.db'}")
    upgrade(engine)
    sessions = make_session_factory(engine)
    with sessions.begin() as session:
        cat.load(session, catalogue(orders * 4), dt.datetime.now(dt.UTC))
        session.execute(update(Shop).values(gateway="sandbox", gateway_secrets={"sandbox": "bench"}))
    acts = activities(sessions, folder, f"http://127.0.0.1:{port}")
    facts = []
    for n in range(orders):
        cmd = order(n).model_copy(
            update={"payment_flow": PaymentFlow.prepayment, "payment_token": "tok_review_ok"}
        )
        at, wid = dt.datetime.now(dt.UTC), f"order-{cmd.order_id}"
        acts.place_order(PlaceOrderMove(move_id=f"{wid}/1", at=at, deliver_mail=True, command=cmd))
        held = acts.charge(ChargeMove(move_id=f"{wid}/2", at=at, deliver_mail=True, order_id=cmd.order_id))
        assert held.view.state is OrderState.waiting_payment, held.view.state
        with sessions() as session:
            txn = session.scalars(
                select(PaymentTransaction).where(PaymentTransaction.order_id == cmd.order_id)
            ).one()
        fact = CallbackFact(
            event_id=f"bench-{n}",
            shop_id=cmd.shop_id,
            order_id=txn.order_id,
            operation=txn.operation,
            amount=txn.amount,
            currency=txn.currency,
            result=Result.ok,
            reference=txn.reference,
            idempotency_key=txn.key,
        )
        body = fact.model_dump(mode="json")
        with sessions.begin() as session:  # stored as the callback endpoint stores it
            stored = PaymentCallback(
                gateway="sandbox",
                event_id=fact.event_id,
                shop_id=fact.shop_id,
                order_id=fact.order_id,
                received_at=at,
                body=json.dumps(body),
            )
            session.add(stored)
            session.flush()
            callback_id = stored.callback_id
        facts.append({"move_id": f"{wid}/3", "at": at.isoformat(), "fact": body, "callback_id": callback_id})
    engine.dispose()
    gateway.should_exit = True
    (folder / "facts.json").write_text(json.dumps(facts))
    print(f"saved {orders} orders held for review in {folder}")


def apply(folder: Path, count: int) -> None:
    facts = json.loads((folder / "facts.json").read_text())
    if count + 1 > len(facts):
        raise SystemExit(f"{folder} holds {len(facts)} orders: --count {count} needs {count + 1}")
    scratch = harness.scratch("docket-bench-callback-")
    shutil.copy(folder / "docket.db", Path(scratch) / "docket.db")
    engine = make_engine(f"sqlite:///{Path(scratch) / 'docket.db'}")
    acts = activities(make_session_factory(engine), Path(scratch), "http://127.0.0.1:9")
    statements = _count_statements(engine)

    def one(saved: dict[str, Any]) -> None:
        move = PaymentCallbackMove(
            move_id=saved["move_id"],
            at=dt.datetime.fromisoformat(saved["at"]),
            deliver_mail=True,
            gateway="sandbox",
            fact=CallbackFact.model_validate(saved["fact"]),
            callback_id=saved["callback_id"],  # marked processed in the move's transaction
        )
        assert acts.apply_payment_callback(move).view.state is OrderState.in_progress

    one(facts[0])  # warm up
    statements.clear()
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for saved in facts[1 : count + 1]:
        one(saved)
    wall, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    with engine.connect() as db:
        processed = db.scalar(select(func.count()).where(PaymentCallback.processed_at.is_not(None)))
    assert processed == count + 1, f"{processed} callbacks marked processed, {count + 1} applied"
    engine.dispose()
    if count:
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        print(
            f"callback's move: {1000 * wall / count:.2f} ms wall, {1000 * cpu / count:.2f} ms CPU, "
            f"{len(statements) / count:.1f} statements per callback ({count} callbacks)"
        )


def _count_statements(engine: Engine) -> list[None]:
    seen: list[None] = []

    @event.listens_for(engine, "before_cursor_execute")
    def count(*_: object) -> None:
        seen.append(None)

    return seen


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    steps = parser.add_subparsers(dest="step", required=True)
    saving = steps.add_parser("save")
    saving.add_argument("folder", type=Path)
    saving.add_argument("--orders", type=int, default=301)
    applying = steps.add_parser("apply")
    applying.add_argument("folder", type=Path)
    applying.add_argument("--count", type=int, default=300)
    args = parser.parse_args()
    if args.step == "save":
        save(args.folder, args.orders)
    else:
        apply(args.folder, args.count)
