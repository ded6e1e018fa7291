"""`docket demo`: seed a catalogue and drive orders of every kind through their lifecycles on the
embedded defaults (SQLite under var/, the Temporal dev server, an in-process worker)."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import time
from decimal import Decimal

import uvicorn
from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.text import Text
from sqlalchemy import func, select

from docket import console as show
from docket.api.app import create_app
from docket.commands import Docket
from docket.models.access import Role
from docket.models.errors import DocketError
from docket.models.lifecycles import DeliveryState
from docket.models.schemas import (
    Address,
    CancelOrder,
    ConfirmPayment,
    CustomerDetails,
    MoveDelivery,
    OrderLineIn,
    OrderView,
    PlaceOrder,
    ReceiveStock,
    RecordRefund,
    ReturnOrder,
)
from docket.runtime import connected, dev_server, run_worker
from docket.sandbox import create_sandbox
from docket.settings import Settings
from docket.store import catalogue as cat
from docket.store import queries
from docket.store.tables import OutboxRow

SANDBOX_SECRET = "demo-sandbox-secret"
ADDRESS = Address(name="Grace Hopper", line1="7 Harbour Rd", city="Hamburg", postcode="20457", country="DE")


def demo_catalogue(today: dt.date) -> cat.Catalogue:
    ops = [
        ("root", "Ada Admin", [Role.admin], []),
        ("hanna", "Hanna (shop admin, Harbour Books)", [Role.shop_admin], ["harbour"]),
        ("otto", "Otto (shop admin, Outdoor Co)", [Role.shop_admin], ["outdoor"]),
        ("cleo", "Cleo (call centre)", [Role.call_centre], ["harbour", "outdoor"]),
        ("paul", "Paul (call centre, processing)", [Role.call_centre_process], ["harbour", "outdoor"]),
        ("conrad", "Conrad (call centre, confirmations)", [Role.call_centre_confirm], ["harbour", "outdoor"]),
        ("web", "Harbour Books storefront", [Role.storefront], ["harbour"]),
    ]

    return cat.Catalogue(
        warehouses=[
            cat.WarehouseIn(
                warehouse_id="hamburg", name="Hamburg", fulfilment_emails=["dispatch-hh@example.test"]
            ),
            cat.WarehouseIn(
                warehouse_id="leipzig", name="Leipzig", fulfilment_emails=["dispatch-le@example.test"]
            ),
        ],
        shops=[
            cat.ShopIn(
                shop_id="harbour",
                name="Harbour Books",
                timezone="Europe/Berlin",
                payment_deadline_hours=48,
                return_days=14,
                admin_emails=["admin@harbour.test"],
                warehouses=["hamburg", "leipzig"],
                gateway_secrets={"sandbox": SANDBOX_SECRET},
            ),
            cat.ShopIn(
                shop_id="outdoor",
                name="Outdoor Co",
                timezone="Europe/Berlin",
                single_parcel=True,
                return_days=14,
                admin_emails=["admin@outdoor.test"],
                warehouses=["leipzig"],
            ),
        ],
        products=[
            cat.ProductIn(sku="ATLAS", name="Harbour Atlas (hardback)"),
            cat.ProductIn(sku="LAMP", name="Reading lamp", backorder_allowed=True),
            cat.ProductIn(sku="SAGA-3", name="Saga, part 3", release_date=today + dt.timedelta(days=2)),
            cat.ProductIn(sku="EBOOK-1", name="Harbour Atlas (e-book)", digital=True),
            cat.ProductIn(sku="TENT", name="Two-person tent"),
            cat.ProductIn(sku="OLD-MAP", name="Discontinued map", online=False),
        ],
        customers=[  # Grace is new: the storefront registers her before her first order
            cat.CustomerIn(customer_id="alan", name="Alan Turing", email="alan@example.test"),
        ],
        operators=[
            cat.OperatorIn(operator_id=i, name=n, email=f"{i}@docket.test", roles=r, shops=s)
            for i, n, r, s in ops
        ],
        stock=[
            cat.OpeningStock(warehouse_id="hamburg", sku="ATLAS", on_hand=20),
            cat.OpeningStock(warehouse_id="hamburg", sku="LAMP", on_hand=1),
            cat.OpeningStock(warehouse_id="leipzig", sku="TENT", on_hand=5),
            cat.OpeningStock(warehouse_id="hamburg", sku="SAGA-3", on_hand=10),
        ],
    )


class Demo:
    def __init__(self, docket: Docket, out: Console, progress: Progress):
        self.docket, self.out, self.progress = docket, out, progress
        self.n = 0

    async def step(self, what: str, job):  # type: ignore[no-untyped-def]
        task = self.progress.add_task(what)
        try:
            return await job
        finally:
            self.progress.remove_task(task)

    def order(self, shop: str, customer: str, *lines: tuple[str, int, str]) -> PlaceOrder:
        self.n += 1
        return PlaceOrder(
            order_id=f"D-{self.n:03d}",
            shop_id=shop,
            customer_id=customer,
            shipping_address=ADDRESS,
            lines=[
                OrderLineIn(sku=s, quantity=q, unit_price=Decimal(p), currency="EUR") for s, q, p in lines
            ],
        )

    async def as_(self, operator_id: str):  # type: ignore[no-untyped-def]
        return await self.docket.operator(operator_id)

    async def place(self, who: str, cmd: PlaceOrder) -> OrderView:
        return await self.step(f"placing {cmd.order_id}", self.docket.place_order(await self.as_(who), cmd))

    async def confirm(self, who: str, order_id: str, note: str) -> OrderView:
        cmd = ConfirmPayment(order_id=order_id, operator_id=who, note=note)
        return await self.step(
            f"confirming payment of {order_id}", self.docket.confirm_payment(await self.as_(who), cmd)
        )

    async def move(self, who: str, order_id: str, no: int, *triggers: str) -> OrderView:
        view = None
        for trigger in triggers:
            cmd = MoveDelivery(order_id=order_id, operator_id=who, delivery_no=no, trigger=trigger)
            view = await self.step(
                f"{trigger} {order_id}/{no}", self.docket.move_delivery(await self.as_(who), cmd)
            )
        assert view is not None
        return view

    def tell(self, title: str, *body: RenderableType) -> None:
        self.out.print(Panel.fit(Group(*body), title=title, title_align="left"))

    def refused(self, error: DocketError) -> Text:
        return Text.assemble(("refused", "red"), f" ({error.kind}): {error}")


async def scenarios(demo: Demo) -> None:
    # 1. A new customer's first order, from the storefront to her door.
    grace = CustomerDetails(name="Grace Hopper", email="grace@example.test")
    await demo.step("registering Grace", demo.docket.save_customer(await demo.as_("web"), "grace", grace))
    o = await demo.place("web", demo.order("harbour", "grace", ("ATLAS", 2, "39.90")))
    reserved = o.deliveries[0].lines[0].reserved
    o = await demo.confirm("conrad", o.order_id, "bank transfer received")
    o = await demo.move("paul", o.order_id, 1, "pack", "mark_ready", "ship", "deliver")
    demo.tell(
        "1. standard delivery (D1)",
        f"the storefront registered Grace, a new customer, and placed her first order; {reserved} ATLAS "
        "reserved in Hamburg.",
        "Conrad confirmed the bank transfer: stock allocated. Paul packed and shipped it.",
        show.order_summary(o),
    )

    # 2. A back order: one lamp on the shelf, three ordered; the rest arrives later.
    o = await demo.place("cleo", demo.order("harbour", "alan", ("LAMP", 3, "24.00")))
    o = await demo.confirm("conrad", o.order_id, "paid at the counter")
    waiting = o.deliveries[0]
    started = time.perf_counter()
    received = await demo.step(
        "receiving 6 lamps in Hamburg",
        demo.docket.change_stock(
            await demo.as_("hanna"),
            ReceiveStock(
                reference=f"DN-{o.order_id}",
                warehouse_id="hamburg",
                sku="LAMP",
                quantity=6,
                operator_id="hanna",
                note="supplier delivery",
            ),
        ),
    )
    o = await demo.step("waiting for the back order to wake", _until_allocated(demo.docket, o.order_id))
    woke = time.perf_counter() - started
    demo.tell(
        "2. back order (D3)",
        f"only {waiting.lines[0].reserved} of 3 lamps on the shelf: the delivery waited in {waiting.state.value}.",
        f"6 lamps received: {', '.join(f'order {w.order_id}' for w in received.woken)} woken at once "
        f"(received to allocated in {woke * 1000:.0f} ms, no polling).",
        show.order_summary(o),
    )

    # 3. A pre-order waits for its release date on a durable timer.
    o = await demo.place(
        "cleo", demo.order("harbour", "grace", ("SAGA-3", 1, "19.00"), ("ATLAS", 1, "39.90"))
    )
    o = await demo.confirm("conrad", o.order_id, "card payment taken by phone")
    d2 = next(d for d in o.deliveries if d.group.value == "D2")
    demo.tell(
        "3. pre-order (D2) beside a standard line",
        f"the order was split; SAGA-3 waits in {d2.state.value} until {d2.release_at:%Y-%m-%d %H:%M} UTC "
        "(midnight in the shop's time zone), a durable timer in the order's workflow.",
        show.order_summary(o),
    )

    # 4. Digital goods go out as soon as they are paid.
    o = await demo.place("web", demo.order("harbour", "alan", ("EBOOK-1", 1, "9.99")))
    o = await demo.confirm("conrad", o.order_id, "paid")
    demo.tell(
        "4. digital delivery (D4)", "released at once on payment: no stock, no parcel.", show.order_summary(o)
    )

    # 5. A shop that ships everything physical in one parcel.
    o = await demo.place("otto", demo.order("outdoor", "grace", ("TENT", 1, "129.00"), ("LAMP", 1, "24.00")))
    o = await demo.confirm("conrad", o.order_id, "invoice paid")
    demo.tell(
        "5. one parcel (D5)",
        "Outdoor Co ships in one parcel: the tent waits in Leipzig until a lamp "
        "arrives there, then both travel together.",
        show.order_summary(o),
    )

    # 6. Cancelled while waiting for payment: the reservation goes back on the shelf.
    o = await demo.place("cleo", demo.order("harbour", "alan", ("ATLAS", 5, "39.90")))
    o = await demo.step(
        "cancelling",
        demo.docket.cancel_order(
            await demo.as_("paul"),
            CancelOrder(order_id=o.order_id, operator_id="paul", reason="customer ordered twice by mistake"),
        ),
    )
    demo.tell(
        "6. cancelled",
        "Paul cancelled it (customer ordered twice by mistake): 5 ATLAS released.",
        show.order_summary(o),
    )

    # 7. What docket refuses, and why.
    lines: list[Text] = []
    shipping = await demo.place("web", demo.order("harbour", "grace", ("ATLAS", 1, "39.90")))
    await demo.confirm("conrad", shipping.order_id, "paid")
    for attempt, job in [
        ("ship before packing", demo.move("paul", shipping.order_id, 1, "ship")),
        ("Otto (Outdoor Co) packs a Harbour Books order", demo.move("otto", shipping.order_id, 1, "pack")),
        (
            "order a discontinued map",
            demo.place("web", demo.order("harbour", "grace", ("OLD-MAP", 1, "5.00"))),
        ),
        (
            "order 30 atlases (not back-orderable)",
            demo.place("web", demo.order("harbour", "grace", ("ATLAS", 30, "39.90"))),
        ),
    ]:
        try:
            await job
            lines.append(Text.assemble(f"{attempt}: ", ("accepted", "green")))
        except DocketError as error:
            lines.append(Text(f"{attempt}: ").append_text(demo.refused(error)))
    await demo.move("paul", shipping.order_id, 1, "pack", "mark_ready", "ship")
    try:
        await demo.docket.cancel_order(
            await demo.as_("paul"),
            CancelOrder(order_id=shipping.order_id, operator_id="paul", reason="customer called"),
        )
    except DocketError as error:
        lines.append(Text("cancel an order already on its way: ").append_text(demo.refused(error)))
    demo.tell("7. refused, with the reason", *lines)

    # 8. A return, and the goods put back on the shelf.
    await demo.move("paul", shipping.order_id, 1, "deliver")
    o = await demo.step(
        "taking the return",
        demo.docket.return_order(
            await demo.as_("conrad"),
            ReturnOrder(order_id=shipping.order_id, operator_id="conrad", note="damaged in transit"),
        ),
    )
    await demo.step(
        "restocking",
        demo.docket.change_stock(
            await demo.as_("hanna"),
            ReceiveStock(
                reference=f"RMA-{o.order_id}",
                warehouse_id="hamburg",
                sku="ATLAS",
                quantity=1,
                kind="return",
                order_id=o.order_id,
                operator_id="hanna",
                note="cover scuffed, sellable",
            ),
        ),
    )
    waiting = o.state.value
    o = await demo.step(
        "recording the refund",
        demo.docket.record_refund(
            await demo.as_("conrad"),
            RecordRefund(
                order_id=o.order_id,
                operator_id="conrad",
                note="39.90 back by bank transfer",
                reference="BT-7731",
            ),
        ),
    )
    demo.tell(
        "8. returned and refunded",
        f"delivered, then returned ({waiting}: it was paid); Conrad refunded it by bank transfer and "
        "recorded that; the atlas went back on the shelf as its own movement.",
        show.order_summary(o),
        show.payments(await demo.docket.order_record(await demo.as_("root"), o.order_id)),
    )

    await paid_by_card(demo)

    root = await demo.as_("root")
    demo.out.print(show.stock_levels(await demo.docket.stock_levels(root, None, None)))
    demo.out.print(show.ledger_report(await demo.docket.verify_stock(root)))
    record = await demo.docket.order_record(root, "D-002")
    demo.out.print(show.order_record(record))
    await demo.step("delivering the last mails", _until_mail_settled(demo.docket))
    mail = await demo.docket.list_mail(root, page_size=500)
    sent = sum(1 for m in mail.mails if m.state == "sent")
    demo.tell(
        "mail",
        f"{sent} of {mail.total} mails delivered, each sent by its move "
        "right after it; here is the first one D-001 sent to its customer.",
        show.rendered_mail(
            await demo.docket.show_mail(
                root,
                next(m for m in reversed(mail.mails) if m.order_id == "D-001").outbox_id,
            )
        ),
    )


async def _until_mail_settled(docket: Docket) -> None:
    query = select(func.count()).select_from(OutboxRow).where(OutboxRow.state == "pending")
    while True:
        if not await docket.read(lambda session: session.scalar(query)):
            return
        await asyncio.sleep(0.05)


async def paid_by_card(demo: Demo) -> None:
    """9. Paid by card through the sandbox gateway, which holds the payment for review and calls
    back, signed, a moment later."""
    cmd = demo.order("harbour", "alan", ("ATLAS", 1, "39.90")).model_copy(
        update={"payment_flow": "prepayment", "payment_token": "tok_review_ok"}
    )
    held = await demo.place("web", cmd)
    o = await demo.step(
        "waiting for the gateway's callback", _until_state(demo.docket, cmd.order_id, "in_progress")
    )
    record = await demo.docket.order_record(await demo.as_("root"), cmd.order_id)
    demo.tell(
        "9. paid by card (prepayment through the sandbox gateway)",
        f"the gateway held the payment for fraud review: the order waited in {held.state.value}; "
        "its signed callback said ok, so the order went ahead and its stock was allocated.",
        show.order_summary(o),
        show.payments(record),
    )


async def _until_state(docket: Docket, order_id: str, state: str) -> OrderView:
    while True:
        view = await docket.look_up(lambda tx: queries.order_view(tx, order_id))
        if view.state.value == state:
            return view
        await asyncio.sleep(0.05)


async def _until_allocated(docket: Docket, order_id: str) -> OrderView:
    while True:
        view = await docket.look_up(lambda tx: queries.order_view(tx, order_id))
        if view.deliveries[0].state is DeliveryState.allocated:
            return view
        await asyncio.sleep(0.02)


def run_demo(settings: Settings, out: Console) -> None:
    database = settings.var_dir / "demo.db"
    for suffix in ("", "-wal", "-shm"):
        database.with_name(database.name + suffix).unlink(missing_ok=True)
    prefix = f"demo-{dt.datetime.now(dt.UTC):%Y%m%d%H%M%S}-"
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), console=out, transient=True) as progress:
        boot = progress.add_task("starting the Temporal dev server")
        with dev_server(settings.var_dir) as address:
            progress.remove_task(boot)
            config = settings.model_copy(
                update={
                    "temporal_address": address,
                    "database_url": f"sqlite:///{database}",
                    "workflow_id_prefix": prefix,
                    # its own queue: a `docket dev` on the same server must not run the demo's
                    # workflows against its own store
                    "task_queue": f"{prefix}orders",
                    "sandbox_url": f"http://127.0.0.1:{_free_port()}",
                }
            )
            asyncio.run(_run(config, out, progress))
    out.print(
        f"\nstore: {database}  ·  mail: {settings.mail_folder}/new  ·  "
        "workflows: Temporal Web UI http://127.0.0.1:8233 while `docket dev` runs"
    )


async def _run(config: Settings, out: Console, progress: Progress) -> None:
    async with connected(config, migrate=True) as running:
        with running.docket.sessions.begin() as session:
            cat.load(session, demo_catalogue(dt.date.today()), dt.datetime.now(dt.UTC))
        out.print(
            Text.assemble(
                ("docket demo", "bold"),
                ": two shops, two warehouses, products of every delivery kind, operators of every role\n",
            )
        )
        api_port = _free_port()
        callback = f"http://127.0.0.1:{api_port}/payments/sandbox/callback"
        servers = [
            uvicorn.Server(
                uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
            )
            for app, port in (
                (create_app(running.docket, running.gateways), api_port),
                (
                    create_sandbox(callback, SANDBOX_SECRET, delay=0.5),
                    int(config.sandbox_url.rsplit(":", 1)[1]),
                ),
            )
        ]
        tasks = [asyncio.create_task(server.serve()) for server in servers]
        worker = asyncio.create_task(run_worker(running))
        try:
            await scenarios(Demo(running.docket, out, progress))
        finally:
            for server in servers:
                server.should_exit = True
            worker.cancel()
            await asyncio.gather(worker, *tasks, return_exceptions=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
