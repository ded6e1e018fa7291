"""Full prepayment through the sandbox gateway, which really runs as an HTTP service and calls
docket back over real HTTP with signed callbacks."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import time
import warnings
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import schemathesis
from sqlalchemy import Engine, func, select, update
from temporalio.testing import WorkflowEnvironment

from docket.activities.mail import Mailer
from docket.activities.orders import OrderActivities
from docket.adapters.payments import SandboxGateway, default_gateways, signed_headers
from docket.api.app import create_app
from docket.models.errors import Refused
from docket.models.lifecycles import OrderState
from docket.models.messages import CancelOrderMove, DeliveryMove, Moved, ReturnOrderMove
from docket.models.schemas import CancelOrder, MoveDelivery, RetryRefund, ReturnOrder
from docket.rendering import Renderer
from docket.sandbox import create_sandbox
from docket.store.tables import AppliedMove, PaymentCallback
from docket.store.tables import Shop as ShopRow
from tests.catalogue import ALPHA_SECRET
from tests.conftest import Shop, eventually, keep_history, process_env, run_cli, running_docket
from tests.orders import move, place
from tests.servers import listening, port_of, served


class Payments:
    def __init__(self, shop: Shop, api: httpx.AsyncClient, sandbox: httpx.AsyncClient):
        self.shop, self.api, self.sandbox = shop, api, sandbox

    async def place(self, order_id: str, token: str, *lines: tuple[str, int]) -> Any:
        cmd = place(order_id, *(lines or (("WIDGET", 2),)), payment_flow="prepayment", payment_token=token)
        return await self.shop.docket.place_order(await self.shop.op("alice"), cmd)

    async def record(self, order_id: str) -> Any:
        return await self.shop.docket.order_record(await self.shop.op("alice"), order_id)

    async def state(self, order_id: str) -> OrderState:
        return (await self.record(order_id)).order.state

    async def callbacks(self) -> int:
        return await self.shop.docket.read(
            lambda s: s.scalar(select(func.count()).select_from(PaymentCallback))
        )


@pytest.fixture
async def payments(sqlite_engine: Engine, temporal_env: WorkflowEnvironment) -> AsyncIterator[Payments]:
    api_sock, sandbox_sock = listening(), listening()
    gateways = default_gateways(f"http://127.0.0.1:{port_of(sandbox_sock)}")
    sandbox_app = create_sandbox(
        f"http://127.0.0.1:{port_of(api_sock)}/payments/sandbox/callback",
        ALPHA_SECRET,
        delay=0.1,
        copies=2,
        shuffle=True,
    )
    async for shop in running_docket(
        sqlite_engine, temporal_env.client, gateways=gateways, widget_on_hand=10, return_days=30
    ):
        async with (
            served(create_app(shop.docket, gateways), api_sock) as api_url,
            served(sandbox_app, sandbox_sock) as sandbox_url,
            httpx.AsyncClient(base_url=api_url, timeout=30) as api_client,
            httpx.AsyncClient(base_url=sandbox_url, timeout=30) as sandbox_client,
        ):
            yield Payments(shop, api_client, sandbox_client)


async def test_a_prepaid_order_is_charged_once_and_goes_ahead(payments: Payments) -> None:
    placed = await payments.place("p-1", "tok_ok")
    assert placed.state is OrderState.in_progress
    assert placed.deliveries[0].state.value == "allocated"
    # the sandbox calls back twice for the one charge: recorded once, the copy answered the same
    await eventually(lambda: _at_least(payments.callbacks, 1))
    await asyncio.sleep(0.5)
    record = await payments.record("p-1")
    assert [(p.operation.value, p.amount, p.result.value) for p in record.payments] == [
        ("authorize_capture", Decimal("19.00"), "ok")
    ]
    assert record.payment.status.value == "full"
    books = (await payments.sandbox.get("/books/p-1")).json()
    assert Decimal(books["captured"]) == record.payment.captured

    await move(payments.shop, "p-1", 1, "pack", "mark_ready", "ship", "deliver")
    assert await payments.state("p-1") is OrderState.completed


async def test_a_clerk_places_a_card_order_from_the_command_line_with_its_token(
    payments: Payments, sqlite_engine: Engine
) -> None:
    env = process_env(payments.shop, sqlite_engine) | {"DOCKET_OPERATOR": "alice"}
    args = ("order", "place", "--order-id", "p-1", "--shop", "alpha", "--customer", "c1")
    args += ("--line", "WIDGET:2:9.50", "--ship-to", "Ada | 1 Main St | Berlin | 10115 | DE")
    code, out, err = await run_cli(env, *args, "--payment-flow", "prepayment", "--payment-token", "tok_ok")
    assert code == 0, err
    assert "in_progress" in out
    record = await payments.record("p-1")
    assert [(p.operation.value, p.amount, p.result.value) for p in record.payments] == [
        ("authorize_capture", Decimal("19.00"), "ok")
    ]


async def test_a_payment_held_for_review_waits_and_goes_ahead_when_the_gateway_calls_back(
    payments: Payments,
) -> None:
    placed = await payments.place("p-1", "tok_review_ok")
    assert placed.state is OrderState.waiting_payment
    assert (await payments.record("p-1")).payment.status.value == "pending"

    await eventually(lambda: _is(payments, "p-1", OrderState.in_progress))
    record = await payments.record("p-1")
    assert record.order.deliveries[0].state.value == "allocated"
    assert [(p.operation.value, p.result.value) for p in record.payments] == [("authorize_capture", "ok")]


async def test_a_payment_refused_after_review_cancels_the_order_and_releases_its_stock(
    payments: Payments,
) -> None:
    await payments.place("p-1", "tok_review_fail")
    await eventually(lambda: _is(payments, "p-1", OrderState.cancelled))
    record = await payments.record("p-1")
    assert record.order.deliveries[0].state.value == "reservation_voided"
    assert record.payment.status.value == "none"
    assert ("admin@alpha.test", "payment_failed") in {
        (n.recipient, n.template_key) for n in record.notifications
    }
    [level] = await payments.shop.docket.stock_levels(await payments.shop.op("alice"), "north", "WIDGET")
    assert level.reserved == 0
    await keep_history(payments.shop, "p-1", "refused_after_review_order")


async def test_a_declined_card_cancels_at_once(payments: Payments) -> None:
    placed = await payments.place("p-1", "tok_declined")
    assert placed.state is OrderState.cancelled
    assert (await payments.record("p-1")).payments[0].result.value == "failed"


async def test_a_late_failure_after_success_is_recorded_and_changes_nothing(payments: Payments) -> None:
    await payments.place("p-1", "tok_late_fail")

    async def late_failure_recorded() -> bool:
        return len((await payments.record("p-1")).payments) == 2

    await eventually(late_failure_recorded)
    record = await payments.record("p-1")
    assert record.order.state is OrderState.in_progress
    assert [(p.operation.value, p.result.value) for p in record.payments] == [
        ("authorize_capture", "ok"),
        ("authorize_capture", "failed"),
    ]
    assert "recorded, nothing changed" in (record.payments[1].note or "")
    assert (record.payment.status.value, record.payment.captured) == ("full", Decimal("19.00"))


def forged(event_id: str) -> dict[str, str]:
    """A callback for order p-1 naming a payment docket never asked for (idempotency key `nope`)."""
    return {
        "event_id": event_id,
        "shop_id": "alpha",
        "order_id": "p-1",
        "operation": "authorize_capture",
        "amount": "19.00",
        "currency": "EUR",
        "result": "ok",
        "idempotency_key": "nope",
    }


async def test_bad_callbacks_get_their_own_status_and_change_nothing(payments: Payments) -> None:
    placed = await payments.place("p-1", "tok_review_ok")
    assert placed.state is OrderState.waiting_payment
    fact = forged("evt-forged")

    async def post(
        body: bytes, secret: str = ALPHA_SECRET, at: int | None = None, gateway: str = "sandbox"
    ) -> httpx.Response:
        headers = signed_headers(secret, at or int(time.time()), body)
        return await payments.api.post(f"/payments/{gateway}/callback", content=body, headers=headers)

    good = json.dumps(fact).encode()
    wrong_signature = await post(good, secret="guess")
    assert (wrong_signature.status_code, wrong_signature.json()["error"]) == (401, "Unauthenticated")
    stale = await post(good, at=int(time.time()) - 3600)
    assert stale.status_code == 401 and "stale" in stale.json()["message"]
    unsigned = await payments.api.post("/payments/sandbox/callback", content=good)
    assert unsigned.status_code == 401
    assert (await post(b"{not json")).status_code == 400
    # JSON between systems is UTF-8 (RFC 8259): a body in UTF-16, whose NULs no store keeps, or in
    # Latin-1 is refused as sent (400), not failed on storing (503, which asks for it again)
    utf16 = json.dumps(fact).encode("utf-16-le")
    latin1 = json.dumps({**fact, "event_id": "évt"}, ensure_ascii=False).encode("latin-1")
    for encoded in (utf16, latin1):
        refused = await post(encoded)
        assert (refused.status_code, refused.json()["message"]) == (400, "the body is not UTF-8 JSON")
    nul_shop = await post(json.dumps({**fact, "shop_id": "al\u0000pha"}).encode())
    assert nul_shop.status_code == 422 and "NUL" in nul_shop.json()["message"]
    no_shop = await post(json.dumps({k: v for k, v in fact.items() if k != "shop_id"}).encode())
    assert (no_shop.status_code, no_shop.json()["message"]) == (
        422,
        "the body has no shop_id: the id of the shop the payment is for",
    )
    numbered_shop = await post(json.dumps({**fact, "shop_id": 7}).encode())
    assert numbered_shop.json()["message"] == "shop_id must be the shop's id as a string, not 7"
    assert (await post(json.dumps({**fact, "amount": "lots"}).encode())).status_code == 422
    too_long = await post(json.dumps({**fact, "event_id": "e" * 201}).encode())  # not a 503 "send it again"
    assert (
        too_long.status_code == 422 and "event_id: String should have at most 200 characters" in too_long.text
    )
    unknown_gateway = await post(good, gateway="paypal")
    assert unknown_gateway.status_code == 404 and "sandbox" in unknown_gateway.json()["message"]
    unknown_order = await post(json.dumps({**fact, "event_id": "evt-2", "order_id": "nope"}).encode())
    assert unknown_order.status_code == 404
    no_such_payment = await post(good)
    assert no_such_payment.status_code == 422 and "idempotency key" in no_such_payment.json()["message"]
    wrong_currency = await post(json.dumps({**fact, "event_id": "evt-3", "currency": "USD"}).encode())
    assert wrong_currency.status_code == 422 and "currency" in wrong_currency.json()["message"]

    again = await post(good)  # a duplicate event answers with the first outcome
    assert again.status_code == 422 and again.json()["message"] == no_such_payment.json()["message"]
    assert await payments.state("p-1") in (OrderState.waiting_payment, OrderState.in_progress)
    # only authenticated, well-formed callbacks were stored: evt-forged, evt-2, evt-3 (+ the sandbox's)
    stored = await payments.shop.docket.read(lambda s: set(s.scalars(select(PaymentCallback.event_id))))
    assert {"evt-forged", "evt-2", "evt-3"} <= stored


async def test_a_callback_its_order_does_not_answer_in_time_gets_503_and_its_resend_the_answer(
    payments: Payments,
) -> None:
    """No answer within the answer timeout (a worker down, say): the gateway is told to send the
    callback again; it stays stored, unprocessed, and the resend is answered as it would have been."""
    await payments.place("p-1", "tok_review_ok")
    fact = forged("evt-slow")  # refused by the order's workflow: no such payment
    body = json.dumps(fact).encode()
    impatient = dataclasses.replace(payments.shop.docket, answer_timeout=0.001)
    async with (
        served(create_app(impatient, default_gateways()), listening()) as url,
        httpx.AsyncClient(base_url=url, timeout=30) as api,
    ):
        headers = signed_headers(ALPHA_SECRET, int(time.time()), body)
        late = await api.post("/payments/sandbox/callback", content=body, headers=headers)
    assert (late.status_code, late.headers.get("Retry-After")) == (503, "5"), late.text
    assert "the callback is stored and was sent to order p-1" in late.json()["message"]
    inbox = (
        await payments.api.get("/payments/inbox", headers={"Authorization": "Bearer alice-token"})
    ).json()
    assert [c["event_id"] for c in inbox if c["event_id"] == "evt-slow"] == ["evt-slow"]

    headers = signed_headers(ALPHA_SECRET, int(time.time()), body)
    resent = await payments.api.post("/payments/sandbox/callback", content=body, headers=headers)
    assert resent.status_code == 422 and "idempotency key" in resent.json()["message"]


async def _at_least(count, n: int) -> bool:  # type: ignore[no-untyped-def]
    return (await count()) >= n


async def _is(payments: Payments, order_id: str, state: OrderState) -> bool:
    return await payments.state(order_id) is state


def test_the_sandbox_client_names_itself() -> None:
    assert SandboxGateway("http://x").name == "sandbox"


async def test_the_inbox_lists_what_is_stored_and_not_processed_and_replays_it(payments: Payments) -> None:
    await payments.place("p-1", "tok_review_ok")
    await eventually(lambda: _is(payments, "p-1", OrderState.in_progress))
    headers = {"Authorization": "Bearer alice-token"}

    async def inbox_empty() -> bool:
        return (await payments.api.get("/payments/inbox", headers=headers)).json() == []

    await eventually(inbox_empty)  # each callback is marked processed in its move's transaction
    await asyncio.sleep(0.5)  # the sandbox's second copy of each callback has come and gone
    every = (await payments.api.get("/payments/inbox", params={"all": True}, headers=headers)).json()
    assert every and all(c["processed_at"] and c["status"] == 200 for c in every)

    # a callback stored but never processed (the process died in between) is replayed
    with payments.shop.sessions.begin() as s:
        s.execute(update(PaymentCallback).values(processed_at=None, status=None, outcome=None))
    waiting = (await payments.api.get("/payments/inbox", headers=headers)).json()
    assert len(waiting) == len(every)
    replayed = (await payments.api.post("/payments/inbox/replay", headers=headers)).json()
    assert all(c["processed_at"] and c["outcome"].startswith("already recorded") for c in replayed)
    assert await payments.state("p-1") is OrderState.in_progress
    carol = await payments.api.post("/payments/inbox/replay", headers={"Authorization": "Bearer carol-token"})
    assert carol.status_code == 403


async def test_cancelling_a_prepaid_order_refunds_it_through_the_gateway(payments: Payments) -> None:
    await payments.place("p-1", "tok_ok")
    alice = await payments.shop.op("alice")
    cancelled = await payments.shop.docket.cancel_order(
        alice, CancelOrder(order_id="p-1", operator_id="alice", reason="changed mind")
    )
    assert cancelled.state is OrderState.cancelled
    record = await payments.record("p-1")
    assert [(p.operation.value, p.result.value) for p in record.payments] == [
        ("authorize_capture", "ok"),
        ("refund", "ok"),
    ]
    assert (record.payment.status.value, record.payment.refunded) == ("none", Decimal("19.00"))
    books = (await payments.sandbox.get("/books/p-1")).json()
    assert (Decimal(books["captured"]), Decimal(books["refunded"])) == (Decimal("19.00"), Decimal("19.00"))


async def test_a_cancel_retried_after_its_refund_went_through_reports_the_order_as_it_is_now(
    payments: Payments,
) -> None:
    """The worker died after the refund was recorded and before the workflow heard of it: the
    retried move finds the refund answered and tells the workflow the order is cancelled, so the
    workflow closes instead of waiting for a refund that was made."""
    await payments.place("p-1", "tok_ok")
    assert (await _cancel(payments, "p-1")).state is OrderState.cancelled
    moved = await _retry(payments, CancelOrder(order_id="p-1", operator_id="alice", reason="changed mind"))
    assert (moved.view.state, moved.refund_failed) == (OrderState.cancelled, False)
    assert await _books(payments, "p-1") == (Decimal("19.00"), Decimal("19.00")), "refunded once"


async def _retry(payments: Payments, command: CancelOrder | ReturnOrder) -> Moved:
    """Run the order's applied cancel or return activity again, as the worker would after losing
    its answer."""
    name, kind, suffix = RETRIED[type(command)]
    move_id, at = await payments.shop.docket.read(
        lambda s: s.execute(
            select(AppliedMove.move_id, AppliedMove.applied_at).where(
                AppliedMove.move_id.endswith(f"-{suffix}")
            )
        ).one()
    )
    move = kind(move_id=move_id, at=at, deliver_mail=True, command=command)
    return await asyncio.to_thread(getattr(_activities(payments), name), move)


def _activities(payments: Payments) -> OrderActivities:
    """The order activities as the worker builds them, to be called as its retry would call them."""
    shop = payments.shop
    mailer = Mailer(shop.sessions, Renderer("docket@shop.test"), shop.transport)
    return OrderActivities(shop.sessions, mailer, default_gateways(str(payments.sandbox.base_url)))


RETRIED: dict[type, tuple[str, type[CancelOrderMove | ReturnOrderMove], str]] = {
    CancelOrder: ("cancel_order", CancelOrderMove, "cancel"),
    ReturnOrder: ("return_order", ReturnOrderMove, "return"),
}


async def _cancel(payments: Payments, order_id: str) -> Any:
    alice = await payments.shop.op("alice")
    return await payments.shop.docket.cancel_order(
        alice, CancelOrder(order_id=order_id, operator_id="alice", reason="changed mind")
    )


async def _money(payments: Payments, order_id: str) -> list[tuple[str, str, bool]]:
    return [
        (p.operation.value, p.result.value, p.settled) for p in (await payments.record(order_id)).payments
    ]


async def _books(payments: Payments, order_id: str) -> tuple[Decimal, Decimal]:
    books = (await payments.sandbox.get(f"/books/{order_id}")).json()
    return Decimal(books["captured"]), Decimal(books["refunded"])


async def test_a_capture_the_gateway_has_not_settled_yet_is_voided_not_refunded(payments: Payments) -> None:
    await payments.place("p-1", "tok_batch")
    await asyncio.sleep(0.4)  # the sandbox's callbacks (ok, not settled) come and change nothing
    assert await _money(payments, "p-1") == [("authorize_capture", "ok", False)]

    cancelled = await _cancel(payments, "p-1")
    assert cancelled.state is OrderState.cancelled
    assert await _money(payments, "p-1") == [("authorize_capture", "ok", False), ("void_capture", "ok", True)]
    record = await payments.record("p-1")
    assert (record.payment.status.value, record.payment.captured, record.payment.refunded) == (
        "none",
        Decimal("0.00"),
        Decimal("0.00"),
    )
    assert await _books(payments, "p-1") == (Decimal("0.00"), Decimal("0.00"))
    assert (await payments.sandbox.post("/batch")).json() == {"settled": 0}  # nothing left to settle


async def test_a_capture_settled_by_the_gateways_batch_goes_back_as_a_refund(payments: Payments) -> None:
    await payments.place("p-1", "tok_batch")
    assert (await payments.sandbox.post("/batch")).json() == {"settled": 1}

    async def settled() -> bool:
        return await _money(payments, "p-1") == [("authorize_capture", "ok", True)]

    await eventually(settled)  # the settlement callback marked the capture settled
    assert (await _cancel(payments, "p-1")).state is OrderState.cancelled
    assert await _money(payments, "p-1") == [("authorize_capture", "ok", True), ("refund", "ok", True)]
    assert await _books(payments, "p-1") == (Decimal("19.00"), Decimal("19.00"))


async def test_a_void_refused_because_the_batch_ran_unnoticed_is_refunded_instead(payments: Payments) -> None:
    await payments.place("p-1", "tok_batch")
    assert (await payments.sandbox.post("/batch", params={"notify": False})).json() == {"settled": 1}

    assert (await _cancel(payments, "p-1")).state is OrderState.cancelled
    assert await _money(payments, "p-1") == [
        ("authorize_capture", "ok", True),  # docket learnt it was settled when the void was refused
        ("void_capture", "failed", False),
        ("refund", "ok", True),
    ]
    record = await payments.record("p-1")
    assert (record.payment.captured, record.payment.refunded) == (Decimal("19.00"), Decimal("19.00"))
    assert await _books(payments, "p-1") == (Decimal("19.00"), Decimal("19.00"))


async def test_a_refused_refund_waits_is_reported_and_is_asked_again(payments: Payments) -> None:
    await payments.place("p-1", "tok_refund_fail")
    alice, conny = await payments.shop.op("alice"), await payments.shop.op("conny")
    await move(payments.shop, "p-1", 1, "pack", "mark_ready", "ship", "deliver")
    returned = await payments.shop.docket.return_order(
        conny, ReturnOrder(order_id="p-1", operator_id="conny", note="wrong size")
    )
    assert returned.state is OrderState.returned_waiting_payment
    record = await payments.record("p-1")
    assert record.payment.status.value == "refund_pending"
    assert ("admin@alpha.test", "refund_failed") in {
        (n.recipient, n.template_key) for n in record.notifications
    }

    # retried (the worker lost the answer): still refused, so the workflow's retry timer still runs
    moved = await _retry(payments, ReturnOrder(order_id="p-1", operator_id="conny", note="wrong size"))
    assert (moved.view.state, moved.refund_failed) == (OrderState.returned_waiting_payment, True)

    again = await payments.shop.docket.retry_refund(alice, RetryRefund(order_id="p-1", operator_id="alice"))
    assert again.state is OrderState.returned_waiting_payment  # refused a second time
    done = await payments.shop.docket.retry_refund(alice, RetryRefund(order_id="p-1", operator_id="alice"))
    assert done.state is OrderState.returned
    record = await payments.record("p-1")
    refunds = [(p.result.value, p.operator_id) for p in record.payments if p.operation.value == "refund"]
    assert refunds == [("failed", "conny"), ("failed", "alice"), ("ok", "alice")]  # who asked each time
    assert (record.history[-1].trigger, record.history[-1].operator_id) == ("refund_returned", "alice")
    assert (record.payment.captured, record.payment.refunded) == (Decimal("19.00"), Decimal("19.00"))
    books = (await payments.sandbox.get("/books/p-1")).json()
    assert Decimal(books["refunded"]) == Decimal("19.00")
    with pytest.raises(Refused):
        await payments.shop.docket.retry_refund(alice, RetryRefund(order_id="p-1", operator_id="alice"))


EXPECTED = {  # token -> (final state, captured net of refunds)
    "tok_ok": (OrderState.in_progress, Decimal("9.50")),
    "tok_review_ok": (OrderState.in_progress, Decimal("9.50")),
    "tok_review_fail": (OrderState.cancelled, Decimal("0.00")),
    "tok_late_fail": (OrderState.in_progress, Decimal("9.50")),
    "tok_declined": (OrderState.cancelled, Decimal("0.00")),
}


@pytest.fixture
async def chaos(sqlite_engine: Engine, temporal_env: WorkflowEnvironment) -> AsyncIterator[Payments]:
    """Every callback sent three times, out of order."""
    api_sock, sandbox_sock = listening(), listening()
    gateways = default_gateways(f"http://127.0.0.1:{port_of(sandbox_sock)}")
    callback = f"http://127.0.0.1:{port_of(api_sock)}/payments/sandbox/callback"
    sandbox_app = create_sandbox(callback, ALPHA_SECRET, delay=0.3, copies=3, shuffle=True)
    async for shop in running_docket(
        sqlite_engine, temporal_env.client, gateways=gateways, widget_on_hand=100
    ):
        async with (
            served(create_app(shop.docket, gateways), api_sock) as api_url,
            served(sandbox_app, sandbox_sock) as sandbox_url,
            httpx.AsyncClient(base_url=api_url, timeout=30) as api_client,
            httpx.AsyncClient(base_url=sandbox_url, timeout=30) as sandbox_client,
        ):
            yield Payments(shop, api_client, sandbox_client)


async def test_a_hundred_orders_with_every_callback_thrice_and_shuffled_end_as_one_clean_callback_would(
    chaos: Payments,
) -> None:
    tokens = {f"c-{n}": list(EXPECTED)[n % len(EXPECTED)] for n in range(100)}
    gate = asyncio.Semaphore(10)

    async def one(order_id: str, token: str) -> None:
        async with gate:
            await chaos.place(order_id, token, ("WIDGET", 1))

    await asyncio.gather(*(one(o, t) for o, t in tokens.items()))

    async def settled() -> bool:
        records = [await chaos.record(o) for o in tokens]
        late = [r for r in records if tokens[r.order.order_id] == "tok_late_fail"]
        return all(
            r.order.state not in (OrderState.pending, OrderState.waiting_payment) for r in records
        ) and all(len(r.payments) == 2 for r in late)

    await eventually(settled, timeout=120)
    await asyncio.sleep(1.5)  # the last copies of the last callbacks arrive and change nothing

    for order_id, token in tokens.items():
        record = await chaos.record(order_id)
        state, net = EXPECTED[token]
        assert record.order.state is state, (order_id, token)
        assert record.payment.captured - record.payment.refunded == net, (order_id, token)
        books = (await chaos.sandbox.get(f"/books/{order_id}")).json()
        assert Decimal(books["captured"]) - Decimal(books["refunded"]) == net, (order_id, token)
    events = {"tok_ok": 1, "tok_review_ok": 1, "tok_review_fail": 1, "tok_late_fail": 2, "tok_declined": 0}
    assert await chaos.callbacks() == sum(events[t] for t in tokens.values()), "each event stored once"
    [level] = await chaos.shop.docket.stock_levels(await chaos.shop.op("alice"), "north", "WIDGET")
    assert level.reserved + (100 - level.on_hand) == 60  # 60 paid orders hold or took their unit
    assert (await chaos.shop.docket.verify_stock(await chaos.shop.op("alice"))).ok


async def test_pay_per_shipment_authorizes_at_placement_and_captures_each_parcel_as_it_ships(
    payments: Payments,
) -> None:
    cmd = place("s-1", ("WIDGET", 2), payment_flow="per_shipment", payment_token="tok_ok")
    placed = await payments.shop.docket.place_order(await payments.shop.op("alice"), cmd)
    assert (placed.state, placed.deliveries[0].state.value) == (OrderState.in_progress, "allocated")
    assert (await payments.record("s-1")).payment.status.value == "none"  # authorized, nothing captured

    shipped = await move(payments.shop, "s-1", 1, "pack", "mark_ready", "ship")
    assert shipped.deliveries[0].state.value == "shipping"
    await move(payments.shop, "s-1", 1, "deliver")
    record = await payments.record("s-1")
    assert record.order.state is OrderState.completed
    assert [(p.operation.value, p.amount, p.delivery_no, p.result.value) for p in record.payments] == [
        ("authorize", Decimal("19.00"), None, "ok"),
        ("capture", Decimal("19.00"), 1, "ok"),
    ]
    assert record.payment.status.value == "full"
    assert Decimal((await payments.sandbox.get("/books/s-1")).json()["captured"]) == Decimal("19.00")


async def test_a_ship_from_a_workflow_that_does_not_pass_the_payment_flow_still_captures(
    payments: Payments,
) -> None:
    """A workflow from before delivery moves carried the order's payment flow: its ship move reads
    the flow from the store, and a parcel paid per shipment is captured as it ships."""
    cmd = place("s-1", ("WIDGET", 2), payment_flow="per_shipment", payment_token="tok_ok")
    await payments.shop.docket.place_order(await payments.shop.op("alice"), cmd)
    await move(payments.shop, "s-1", 1, "pack", "mark_ready")
    ship = MoveDelivery(order_id="s-1", operator_id="alice", delivery_no=1, trigger="ship")
    older = DeliveryMove(
        move_id="order-s-1/5-ship-1", at=dt.datetime.now(dt.UTC), deliver_mail=True, command=ship
    )
    assert older.payment_flow is None

    moved = await asyncio.to_thread(_activities(payments).move_delivery, older)

    assert isinstance(moved, Moved) and moved.view.deliveries[0].state.value == "shipping"
    record = await payments.record("s-1")
    assert [(p.operation.value, p.delivery_no, p.result.value) for p in record.payments] == [
        ("authorize", None, "ok"),
        ("capture", 1, "ok"),
    ]
    assert Decimal((await payments.sandbox.get("/books/s-1")).json()["captured"]) == Decimal("19.00")


async def test_a_parcel_whose_capture_is_refused_is_held_until_shipping_it_again_captures(
    payments: Payments, sqlite_engine: Engine
) -> None:
    cmd = place("s-1", ("WIDGET", 1), payment_flow="per_shipment", payment_token="tok_capture_fail")
    await payments.shop.docket.place_order(await payments.shop.op("alice"), cmd)
    await move(payments.shop, "s-1", 1, "pack", "mark_ready")
    cli = process_env(payments.shop, sqlite_engine) | {"DOCKET_OPERATOR": "alice", "COLUMNS": "200"}
    code, out, err = await run_cli(cli, "order", "ship", "s-1", "1")
    # the operator is told the parcel stayed, why, and what to do (exit 5: not shipped)
    assert code == 5 and "ready_waiting_payment" in out
    assert (
        "delivery 1 of order s-1 is held, not shipped: the gateway refused its capture of 9.50 EUR"
        " (insufficient funds); `docket order ship s-1 1` asks again, `docket order cancel s-1` gives up"
    ) in err
    record = await payments.record("s-1")
    assert ("admin@alpha.test", "payment_failed") in {
        (n.recipient, n.template_key) for n in record.notifications
    }

    code, out, err = await run_cli(cli, "order", "ship", "s-1", "1")
    assert code == 0 and "shipping" in out and not err
    shipped = await payments.shop.docket.order_record(await payments.shop.op("alice"), "s-1")
    assert shipped.order.deliveries[0].state.value == "shipping"
    record = await payments.record("s-1")
    assert [(p.operation.value, p.result.value) for p in record.payments] == [
        ("authorize", "ok"),
        ("capture", "failed"),
        ("capture", "ok"),
    ]


async def test_cancelling_before_anything_shipped_releases_the_authorization(payments: Payments) -> None:
    cmd = place("s-1", ("WIDGET", 1), payment_flow="per_shipment", payment_token="tok_ok")
    alice = await payments.shop.op("alice")
    await payments.shop.docket.place_order(alice, cmd)
    cancelled = await payments.shop.docket.cancel_order(
        alice, CancelOrder(order_id="s-1", operator_id="alice", reason="x")
    )
    assert cancelled.state is OrderState.cancelled
    record = await payments.record("s-1")
    assert [(p.operation.value, p.amount, p.result.value) for p in record.payments] == [
        ("authorize", Decimal("9.50"), "ok"),
        ("reverse_authorization", Decimal("9.50"), "ok"),
    ]
    assert record.payment.status.value == "none"
    assert Decimal((await payments.sandbox.get("/books/s-1")).json()["captured"]) == 0


FUZZED = ("/orders", "/deliveries", "/payments", "/customers")


async def test_the_order_and_callback_endpoints_fuzzed_from_the_openapi_spec_never_fail_on_the_server(
    payments: Payments,
) -> None:
    spec = (await payments.api.get("/openapi.json")).json()
    schema = schemathesis.openapi.from_dict(spec)
    headers = {"Authorization": "Bearer alice-token"}
    seen: dict[str, set[int]] = {}
    for found in schema.get_all_operations():
        operation = found.ok()
        if not operation.path.startswith(FUZZED):
            continue
        strategy = operation.as_strategy()
        for _ in range(15):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Hypothesis: .example() outside @given
                case = strategy.example()
            request = case.as_transport_kwargs(base_url=str(payments.api.base_url), headers=headers)
            response = await payments.api.request(
                request["method"],
                request["url"],
                headers=request["headers"],
                params=request.get("params"),
                json=request.get("json"),
                content=request.get("data") if isinstance(request.get("data"), (bytes, str)) else None,
            )
            assert response.status_code < 500, (request, response.text)
            seen.setdefault(f"{operation.method.upper()} {operation.path}", set()).add(response.status_code)
    assert any(path.startswith("POST /payments/") for path in seen) and "POST /orders" in seen
    # a callback without a valid signature is never a payment fact
    assert seen["POST /payments/{gateway}/callback"] <= {400, 401, 404, 422}


async def test_callbacks_from_an_address_the_shop_does_not_allow_are_refused(payments: Payments) -> None:
    with payments.shop.sessions.begin() as s:
        s.execute(update(ShopRow).where(ShopRow.shop_id == "alpha").values(callback_sources=["10.9.9.9"]))
    body = json.dumps(
        {
            "event_id": "e",
            "shop_id": "alpha",
            "order_id": "x",
            "operation": "refund",
            "amount": "1.00",
            "currency": "EUR",
            "result": "ok",
        }
    ).encode()
    refused = await payments.api.post(
        "/payments/sandbox/callback",
        content=body,
        headers=signed_headers(ALPHA_SECRET, int(time.time()), body),
    )
    assert refused.status_code == 401 and "not taken from 127.0.0.1" in refused.json()["message"]
    assert await payments.callbacks() == 0


async def test_a_refund_made_in_the_gateways_panel_is_recorded_never_beyond_what_was_captured(
    payments: Payments,
) -> None:
    await payments.place("p-1", "tok_ok")
    await asyncio.sleep(0.5)  # the sandbox's own callbacks for the charge come and go

    async def refund_callback(event: str, amount: str) -> httpx.Response:
        body = json.dumps(
            {
                "event_id": event,
                "shop_id": "alpha",
                "order_id": "p-1",
                "operation": "refund",
                "amount": amount,
                "currency": "EUR",
                "result": "ok",
                "reference": "panel",
            }
        ).encode()
        return await payments.api.post(
            "/payments/sandbox/callback",
            content=body,
            headers=signed_headers(ALPHA_SECRET, int(time.time()), body),
        )

    first = await refund_callback("panel-1", "5.00")
    assert (first.status_code, first.json()["outcome"]) == (200, "external refund recorded")
    await refund_callback("panel-2", "50.00")  # more than is left: only what is left is recorded
    record = await payments.record("p-1")
    assert [
        (p.operation.value, p.amount) for p in record.payments if p.operation.value == "external_refund"
    ] == [
        ("external_refund", Decimal("5.00")),
        ("external_refund", Decimal("14.00")),
    ]
    assert (record.payment.captured, record.payment.refunded) == (Decimal("19.00"), Decimal("19.00"))
