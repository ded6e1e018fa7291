"""The HTTP API over real HTTP, against a running worker, as a storefront and staff drive it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from docket.api.app import create_app
from docket.connect import temporal_client
from docket.runtime import dev_server
from docket.settings import Settings
from docket.worker import build_worker
from tests.conftest import Shop, eventually, running_docket
from tests.servers import listening, port_of, served

ORDER = {
    "order_id": "web-1",
    "shop_id": "alpha",
    "customer_id": "c1",
    "lines": [{"sku": "WIDGET", "quantity": 2, "unit_price": "19.90", "currency": "EUR"}],
    "shipping_address": {
        "name": "Ada",
        "line1": "1 Main St",
        "city": "Berlin",
        "postcode": "10115",
        "country": "DE",
    },
}


@pytest.fixture
async def http(shop: Shop) -> AsyncIterator[httpx.AsyncClient]:
    server = uvicorn.Server(
        uvicorn.Config(create_app(shop.docket), host="127.0.0.1", port=0, log_level="error")
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
        yield client
    server.should_exit = True
    await task


def as_(operator: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {operator}-token"}


async def test_an_order_placed_over_http_is_moved_by_staff_to_completed(http: httpx.AsyncClient) -> None:
    placed = await http.post("/orders", json=ORDER, headers=as_("alice"))
    assert placed.status_code == 200, placed.text
    assert placed.json()["state"] == "waiting_confirmation"
    again = await http.post("/orders", json=ORDER, headers=as_("alice"))
    assert again.json() == placed.json()
    other = {**ORDER, "lines": [{**ORDER["lines"][0], "quantity": 3}]}  # a second order under the same id
    answer = await http.post("/orders", json=other, headers=as_("alice"))
    assert (answer.status_code, answer.json()["error"]) == (422, "InvalidInput")
    assert "order id web-1 is already taken by an order that differs in lines" in answer.json()["message"]

    confirmed = await http.post(
        "/orders/web-1/confirm-payment", json={"note": "transfer seen"}, headers=as_("conny")
    )
    assert confirmed.json()["deliveries"][0]["state"] == "allocated"
    to_pack = await http.get(
        "/deliveries", params={"warehouse_id": "north", "state": "allocated"}, headers=as_("pat")
    )
    assert to_pack.status_code == 200, to_pack.text
    assert [(d["order_id"], d["delivery_no"]) for d in to_pack.json()["deliveries"]] == [("web-1", 1)]
    for move, body in (("pack", {}), ("mark_ready", None), ("ship", {"note": "DHL 0042"}), ("deliver", None)):
        # a move without a note is sent with an empty body or none at all
        moved = await http.post(f"/orders/web-1/deliveries/1/{move}", json=body, headers=as_("pat"))
        assert moved.status_code == 200, moved.text
    assert moved.json()["state"] == "completed"

    record = (await http.get("/orders/web-1", headers=as_("carol"))).json()
    assert [h["note"] for h in record["history"] if h["trigger"] == "ship"] == ["DHL 0042"]
    assert [h["trigger"] for h in record["history"]][-5:] == [
        "pack",
        "mark_ready",
        "ship",
        "deliver",
        "complete",
    ]
    listed = (await http.get("/orders", params={"state": "completed"}, headers=as_("carol"))).json()
    assert [o["order_id"] for o in listed["orders"]] == ["web-1"]
    assert (await http.get("/stock/verify", headers=as_("root"))).status_code == 200


async def test_bad_requests_get_a_status_and_a_message_that_says_what_is_wrong(
    http: httpx.AsyncClient,
) -> None:
    assert (await http.post("/orders", json=ORDER)).status_code == 401
    assert (await http.post("/orders", json=ORDER, headers=as_("nobody"))).json()[
        "message"
    ] == "unknown or revoked API token"

    bad_quantity = {**ORDER, "lines": [{**ORDER["lines"][0], "quantity": 0}]}
    answer = await http.post("/orders", json=bad_quantity, headers=as_("alice"))
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][-1] == "quantity"

    unknown = {**ORDER, "lines": [{**ORDER["lines"][0], "sku": "NOPE"}]}
    answer = await http.post("/orders", json=unknown, headers=as_("alice"))
    assert (answer.status_code, answer.json()) == (404, {"error": "NotFound", "message": "unknown SKU NOPE"})

    for listing in (
        "/orders",
        "/mail",
        "/deliveries",
    ):  # an offset beyond the database's integers (found by fuzzing)
        answer = await http.get(listing, params={"page": 10**19}, headers=as_("alice"))
        assert answer.status_code == 422
        assert answer.json()["detail"][0]["loc"] == ["query", "page"]

    # a filter misspelt is refused, naming the ones there are, not ignored (every shop's orders)
    answer = await http.get("/orders", params={"shop": "beta", "page": 1}, headers=as_("alice"))
    assert (answer.status_code, answer.json()["error"]) == (422, "InvalidInput")
    assert answer.json()["message"] == (
        "unknown query parameter 'shop': GET /orders takes shop_id, state, customer_id,"
        " placed_from, placed_until, page, page_size"
    )
    answer = await http.get("/orders/web-1", params={"verbose": "1"}, headers=as_("alice"))
    assert answer.json()["message"] == (
        "unknown query parameter 'verbose': GET /orders/{order_id} takes no query parameters"
    )
    assert (await http.get("/orders", params={"shop_id": "alpha"}, headers=as_("alice"))).status_code == 200
    # a body over 1 MiB is refused unread, declared or streamed, on every route
    huge = b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    for path in ("/orders", "/payments/sandbox/callback"):
        answer = await http.post(path, content=huge, headers=as_("alice"))
        assert (answer.status_code, answer.json()) == (
            413,
            {"error": "TooLarge", "message": "the body is 2,097,163 bytes; at most 1,048,576 are taken"},
        )

    async def streamed() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
        for start in range(0, len(huge), 64 * 1024):
            yield huge[start : start + 64 * 1024]

    answer = await http.post("/payments/sandbox/callback", content=streamed())
    assert (answer.status_code, answer.json()["message"]) == (
        413,
        "the body is more than 1,048,576 bytes, the most taken",
    )
    where = {"name": "A", "line1": "1 Main St", "city": "Berlin", "postcode": "10115", "country": "DE"}
    long_line2 = {**ORDER, "order_id": "web-l2", "shipping_address": {**where, "line2": "y" * 201}}
    answer = await http.post("/orders", json=long_line2, headers=as_("alice"))
    assert (answer.status_code, answer.json()["message"]) == (
        422,
        "shipping_address.line2: 201 characters; at most 200, as line1",
    )
    # routing's refusals in the same shape, saying what is there instead
    answer = await http.get("/order", headers=as_("alice"))
    assert (answer.status_code, answer.json()) == (
        404,
        {"error": "NotFound", "message": "no route GET /order: the routes are listed at /docs"},
    )
    answer = await http.get("/orders/web-1/cancel", headers=as_("alice"))
    assert (answer.status_code, answer.headers["allow"], answer.json()) == (
        405,
        "POST",
        {
            "error": "MethodNotAllowed",
            "message": "GET is not allowed on /orders/web-1/cancel: it takes POST",
        },
    )
    for listing, params, said in (  # a filter naming what docket does not know: 404, not an empty list
        ("/orders", {"customer_id": "nobody"}, "unknown customer nobody"),
        ("/mail", {"order_id": "nope"}, "unknown order nope"),
        ("/stock", {"sku": "NOPE"}, "unknown SKU NOPE"),
        ("/deliveries", {"warehouse_id": "west"}, "unknown warehouse west"),
    ):
        answer = await http.get(listing, params=params, headers=as_("alice"))
        assert (answer.status_code, answer.json()["message"]) == (404, said)

    for currency, price, said in (  # money: an ISO 4217 currency docket keeps, prices in its minor unit
        ("XYZ", "19.90", "currency: 'XYZ' is not an ISO 4217 currency code, such as EUR, USD or GBP"),
        ("BHD", "19.90", "currency: BHD amounts have three decimal places; docket keeps money to two"),
        ("JPY", "1990.50", "lines.0.unit_price: 1990.50 JPY is not a whole amount of its minor unit"),
    ):
        odd = {
            **ORDER,
            "order_id": f"web-{currency}",
            "lines": [{**ORDER["lines"][0], "currency": currency, "unit_price": price}],
        }
        answer = await http.post("/orders", json=odd, headers=as_("alice"))
        assert (answer.status_code, answer.json()["error"]) == (422, "InvalidInput")
        assert answer.json()["message"].startswith(said), answer.json()
    nowhere = {
        **ORDER,
        "order_id": "web-xx",
        "shipping_address": {**ORDER["shipping_address"], "country": "XX"},
    }
    answer = await http.post("/orders", json=nowhere, headers=as_("alice"))
    assert (answer.status_code, answer.json()["message"]) == (
        422,
        "shipping_address.country: 'XX' is not an ISO 3166 country code, such as DE, FR or US",
    )
    lower = {**nowhere, "shipping_address": {**ORDER["shipping_address"], "country": "de"}}
    answer = await http.post("/orders", json=lower, headers=as_("alice"))
    assert answer.json()["message"] == (
        "body.shipping_address.country: write an ISO 3166 country code in capitals, such as DE"
    )
    yen = {
        **ORDER,
        "order_id": "web-yen",
        "lines": [{**ORDER["lines"][0], "currency": "JPY", "unit_price": "1990"}],
    }
    answer = await http.post("/orders", json=yen, headers=as_("alice"))
    assert (answer.status_code, answer.json()["total"], answer.json()["currency"]) == (200, "3980.00", "JPY")

    too_many = {**ORDER, "order_id": "web-2", "lines": [{**ORDER["lines"][0], "quantity": 11}]}
    answer = await http.post("/orders", json=too_many, headers=as_("alice"))
    assert answer.status_code == 422
    assert answer.json()["error"] == "OrderRejected"

    answer = await http.post("/orders", json=ORDER, headers=as_("bob"))
    assert (answer.status_code, answer.json()["message"]) == (
        403,
        "operator bob does not work for shop alpha",
    )

    assert (await http.post("/orders", content=b"{not json", headers=as_("alice"))).status_code == 422


async def test_a_storefront_registers_a_new_customer_and_places_their_order(http: httpx.AsyncClient) -> None:
    first_order = {**ORDER, "order_id": "web-new", "customer_id": "new-buyer"}
    answer = await http.post("/orders", json=first_order, headers=as_("web"))
    assert answer.status_code == 404
    assert answer.json()["message"].startswith("unknown customer new-buyer: register them first")

    grace = {"name": "Grace Buyer", "email": "grace@example.test"}
    saved = await http.put("/customers/new-buyer", json=grace, headers=as_("web"))
    assert (saved.status_code, saved.json()["outcome"]) == (201, "created")
    again = await http.put("/customers/new-buyer", json=grace, headers=as_("web"))
    assert (again.status_code, again.json()["outcome"]) == (200, "unchanged")

    placed = await http.post("/orders", json=first_order, headers=as_("web"))
    assert placed.status_code == 200, placed.text
    moved = {**grace, "email": "grace@elsewhere.test"}
    changed = await http.put("/customers/new-buyer", json=moved, headers=as_("carol"))
    assert (changed.status_code, changed.json()["outcome"]) == (200, "changed")
    shown = await http.get("/customers/new-buyer", headers=as_("alice"))
    assert shown.json() == {"customer_id": "new-buyer", **moved}
    history = (await http.get("/customers/new-buyer/history", headers=as_("alice"))).json()
    assert [(h["operator_id"], h["outcome"], h["email"]) for h in history] == [
        ("web", "created", "grace@example.test"),
        ("carol", "changed", "grace@elsewhere.test"),
    ]
    found = (await http.get("/customers", params={"q": "ELSEWHERE"}, headers=as_("carol"))).json()
    assert (found["customers"], found["total"]) == ([{"customer_id": "new-buyer", **moved}], 1)
    answer = await http.get("/customers", params={"q": "grace"}, headers=as_("web"))
    assert (answer.status_code, answer.json()["message"]) == (
        403,
        "operator web (storefront) may not search customers",  # it reads the ones it registers, by id
    )

    answer = await http.put("/customers/new-buyer", json=grace, headers=as_("pat"))
    assert (answer.status_code, answer.json()["message"]) == (
        403,
        "operator pat (call_centre_process) may not register and change customers",
    )
    answer = await http.put("/customers/new buyer", json={"name": "", "email": "grace"}, headers=as_("web"))
    assert answer.status_code == 422
    assert answer.json()["error"] == "InvalidInput"  # the shape of every refusal, with FastAPI's detail
    assert "body.email: not an e-mail address: write it as name@example.com" in answer.json()["message"]
    said = {tuple(d["loc"]): d["msg"] for d in answer.json()["detail"]}
    assert said[("path", "customer_id")].startswith("use 1 to 64 letters, digits and _ . : -")
    assert said[("body", "email")] == "not an e-mail address: write it as name@example.com"
    assert ("body", "name") in said
    assert (await http.get("/customers/nobody", headers=as_("alice"))).status_code == 404
    body = b'{"name": "Grace \\ud800", "email": "grace@example.test"}'  # an unpaired surrogate
    json_body = {"Content-Type": "application/json", **as_("web")}
    answer = await http.put("/customers/new-buyer", content=body, headers=json_body)
    assert answer.status_code == 422, answer.text  # was a 500: the answer repeating it could not be encoded
    assert answer.json()["message"].startswith("body.name: Input should be a valid string")


async def test_an_illegal_move_over_http_is_a_conflict_naming_what_is_allowed(
    http: httpx.AsyncClient,
) -> None:
    await http.post("/orders", json=ORDER, headers=as_("alice"))
    answer = await http.post("/orders/web-1/deliveries/1/ship", json={}, headers=as_("alice"))
    assert answer.status_code == 409
    assert answer.json()["message"] == "order web-1 is waiting_confirmation: deliveries move once it is paid"
    answer = await http.post("/orders/web-1/return", json={}, headers=as_("alice"))
    assert answer.status_code == 409
    assert answer.json()["message"].endswith("allowed from here: confirm_payment, cancel")


async def test_stock_received_over_http_is_idempotent_by_reference(http: httpx.AsyncClient) -> None:
    receipt = {"reference": "dn-7", "warehouse_id": "north", "sku": "WIDGET", "quantity": 5}
    first = (await http.post("/stock/receipts", json=receipt, headers=as_("alice"))).json()
    second = (await http.post("/stock/receipts", json=receipt, headers=as_("alice"))).json()
    assert (
        first["level"]
        == second["level"]
        == {
            "warehouse_id": "north",
            "sku": "WIDGET",
            "on_hand": 15,
            "reserved": 0,
            "backordered": 0,
            "available": 15,
        }
    )
    assert second["duplicate"] is True
    typo = await http.post("/stock/receipts", json={**receipt, "quantity": 50}, headers=as_("alice"))
    assert (typo.status_code, typo.json()["error"]) == (422, "InvalidInput")
    assert (
        "reference dn-7 already recorded another stock change (receive +5 WIDGET at north)"
        in typo.json()["message"]
    )
    for body, said in (  # what is wrong, said in words, and nothing recorded
        ({**receipt, "reference": "dn 8"}, "body.reference: use 1 to 64 letters, digits and _ . : -"),
        (
            {**receipt, "reference": "dn-8", "sku": "EBOOK"},
            "EBOOK is a digital product: no stock of it is kept, in any warehouse",
        ),
    ):
        refused = await http.post("/stock/receipts", json=body, headers=as_("alice"))
        assert refused.status_code == 422 and refused.json()["message"].startswith(said)
    count = {"reference": "c-1", "warehouse_id": "north", "sku": "WIDGET", "delta": -99, "note": "count"}
    answer = await http.post("/stock/adjustments", json=count, headers=as_("alice"))
    assert answer.status_code == 409
    assert "at most 15 can go" in answer.json()["message"]


async def test_staff_read_an_orders_mail_over_http_and_retry_failed_ones(
    http: httpx.AsyncClient, shop: Shop
) -> None:
    assert (await http.post("/orders", json=ORDER, headers=as_("alice"))).status_code == 200

    async def all_sent() -> bool:
        page = (await http.get("/mail", params={"order_id": "web-1"}, headers=as_("alice"))).json()
        return page["total"] == 3 and all(m["state"] == "sent" for m in page["mails"])

    await eventually(all_sent)
    page = (await http.get("/mail", params={"order_id": "web-1"}, headers=as_("alice"))).json()
    received = next(m for m in page["mails"] if m["template_key"] == "order_received")
    assert (received["recipient"], received["cc"]) == ("ada@example.test", "alice@alpha.test")

    shown = await http.get(f"/mail/{received['outbox_id']}", headers=as_("alice"))
    assert shown.status_code == 200
    assert shown.json()["subject"] == "Your order web-1 at Alpha"
    assert "2 x Widget" in shown.json()["text"]
    assert shown.json()["message_id"].endswith("@shop.test>")

    # bob works for beta: alpha's mail is not his to read or retry
    assert (await http.get(f"/mail/{received['outbox_id']}", headers=as_("bob"))).status_code == 403
    bob_sees = (await http.get("/mail", headers=as_("bob"))).json()
    assert bob_sees["total"] == 0
    assert (await http.get("/mail/999999", headers=as_("alice"))).status_code == 404

    nothing_failed = await http.post("/mail/retry", json={"order_id": "web-1"}, headers=as_("alice"))
    assert nothing_failed.json() == {"retried": [], "orders": []}
    empty = await http.post("/mail/retry", json={}, headers=as_("alice"))
    assert empty.status_code == 422 and "name the mails to retry" in empty.text
    carol = await http.post("/mail/retry", json={"order_id": "web-1"}, headers=as_("carol"))
    assert carol.status_code == 403 and "may not retry mail" in carol.json()["message"]


async def test_a_manual_refund_over_http_needs_a_note_and_a_refund_waiting(http: httpx.AsyncClient) -> None:
    assert (await http.post("/orders", json=ORDER, headers=as_("alice"))).status_code == 200
    no_note = await http.post("/orders/web-1/refund", json={}, headers=as_("conny"))
    assert no_note.status_code == 422 and "note" in no_note.text
    too_early = await http.post("/orders/web-1/refund", json={"note": "cash"}, headers=as_("conny"))
    assert too_early.status_code == 409
    assert "waiting_confirmation: no refund is waiting to be made" in too_early.json()["message"]

    await http.post("/orders/web-1/confirm-payment", json={"note": "seen"}, headers=as_("conny"))
    await http.post("/orders/web-1/cancel", json={"reason": "ordered twice"}, headers=as_("pat"))
    shown = (await http.get("/orders/web-1", headers=as_("alice"))).json()
    assert (shown["order"]["state"], shown["payment"]["status"]) == (
        "cancelled_waiting_payment",
        "refund_pending",
    )
    done = await http.post("/orders/web-1/refund", json={"note": "cash at the till"}, headers=as_("conny"))
    assert done.status_code == 200 and done.json()["state"] == "cancelled"
    shown = (await http.get("/orders/web-1", headers=as_("alice"))).json()
    assert (shown["payment"]["captured"], shown["payment"]["refunded"]) == ("39.80", "39.80")


def free_pair() -> tuple[int, int]:
    """Two distinct ports free at this moment (both held open while they are found)."""
    held = listening(), listening()
    ports = port_of(held[0]), port_of(held[1])
    for sock in held:
        sock.close()
    return ports


@contextlib.contextmanager
def dev_server_on(var: Path, ports: Callable[[], tuple[int, int]]) -> Iterator[tuple[str, int, int]]:
    """A dev server on the ports `ports` gives: its address and the ports. Another process may
    take a port between its being found free and the server binding it, so `ports` is asked again
    a moment later, up to three times (a fresh pair, or the same pair for a restart)."""
    for attempt in range(3):
        temporal_port, ui_port = ports()
        with contextlib.ExitStack() as stack:
            try:
                address = stack.enter_context(dev_server(var, port=temporal_port, ui_port=ui_port))
            except RuntimeError:
                if attempt == 2:
                    raise
                time.sleep(1)
                continue
            yield address, temporal_port, ui_port
            return


async def test_with_temporal_down_an_order_gets_503_and_the_same_request_later_goes_through(
    sqlite_engine: Engine, tmp_path: Path
) -> None:
    """Temporal stops under a running API: the storefront is told to send again, and once Temporal
    is back the same request places the order."""

    with dev_server_on(tmp_path / "temporal", free_pair) as (address, temporal_port, ui_port):
        client = await temporal_client(Settings(temporal_address=address, var_dir=tmp_path))
    async for shop in running_docket(sqlite_engine, client, with_worker=False):
        async with (
            served(create_app(shop.docket), listening()) as url,
            httpx.AsyncClient(base_url=url, timeout=60) as http,
        ):
            ready = await http.get("/ready")
            assert ready.status_code == 503 and ready.json()["database"] == "ok"
            assert ready.json()["temporal"].startswith("cannot reach Temporal: UNAVAILABLE")
            answer = await http.post("/orders", json=ORDER, headers=as_("alice"))
            assert (answer.status_code, answer.headers.get("Retry-After")) == (503, "5"), answer.text
            assert answer.json()["error"] == "Unavailable"
            assert "send the same request again shortly" in answer.json()["message"]

            with dev_server_on(tmp_path / "temporal", lambda: (temporal_port, ui_port)):
                async with build_worker(
                    client,
                    shop.sessions,
                    shop.task_queue,
                    transport=shop.transport,
                    renderer=shop.docket.renderer,
                    gateways={},
                ):
                    ready = await http.get("/ready")
                    assert (ready.status_code, ready.json()["database"], ready.json()["temporal"]) == (
                        200,
                        "ok",
                        "ok",
                    )
                    again = await http.post("/orders", json=ORDER, headers=as_("alice"))
                    assert again.status_code == 200, again.text
                    assert again.json()["state"] == "waiting_confirmation"


async def test_with_no_worker_running_a_request_is_told_so_in_time_and_carried_out_once_one_runs(
    sqlite_engine: Engine, temporal_env: WorkflowEnvironment
) -> None:
    """Temporal is up but nothing works its task queue: each request gets 503 within the answer
    timeout instead of waiting without end, and what it handed over is carried out once a worker
    runs: the order placed, the stock received, the move made."""
    async for shop in running_docket(sqlite_engine, temporal_env.client, with_worker=False):
        docket = dataclasses.replace(shop.docket, answer_timeout=1.0)

        def worker(on: Shop = shop) -> Worker:
            return build_worker(
                temporal_env.client,
                on.sessions,
                on.task_queue,
                transport=on.transport,
                renderer=on.docket.renderer,
                gateways={},
            )

        async with (
            served(create_app(docket), listening()) as url,
            httpx.AsyncClient(base_url=url, timeout=60) as http,
        ):
            ready = await http.get("/ready")  # ready to serve; what is missing is said beside
            assert ready.status_code == 200 and ready.json()["workers"] == (
                f"no worker has polled task queue {shop.task_queue} lately: start docket worker"
            )
            receipt = {"reference": "dn-9", "warehouse_id": "north", "sku": "WIDGET", "quantity": 5}
            for path, body, then in (
                ("/orders", ORDER, "placing it again with the same order id is safe"),
                ("/stock/receipts", receipt, "the same change again (same reference) is safe"),
            ):
                started = time.monotonic()
                answer = await http.post(path, json=body, headers=as_("alice"))
                assert (answer.status_code, answer.headers.get("Retry-After")) == (503, "5"), answer.text
                said = answer.json()
                assert said["error"] == "Unavailable" and then in said["message"]
                assert (
                    f"no worker may be running (docket worker, on task queue {shop.task_queue})"
                    in (said["message"])
                )
                assert time.monotonic() - started < 15  # told in time, not left waiting

            async with worker():

                async def polled(queue: str = shop.task_queue) -> bool:
                    said = (await http.get("/ready")).json()["workers"]
                    return bool(said == f"1 polling task queue {queue}")

                await eventually(polled)
                again = await http.post("/orders", json=ORDER, headers=as_("alice"))
                assert (again.status_code, again.json()["state"]) == (200, "waiting_confirmation"), again.text
                stocked = await http.post("/stock/receipts", json=receipt, headers=as_("alice"))
                assert stocked.status_code == 200 and stocked.json()["duplicate"], stocked.text
                [level] = (
                    await http.get("/stock?warehouse_id=north&sku=WIDGET", headers=as_("alice"))
                ).json()
                assert level["on_hand"] == 15  # received once, whatever was asked twice

            confirm = await http.post("/orders/web-1/confirm-payment", headers=as_("alice"))
            assert confirm.status_code == 503 and "docket order show web-1 tells" in confirm.json()["message"]
            async with worker():

                async def confirmed() -> bool:
                    order = (await http.get("/orders/web-1", headers=as_("alice"))).json()["order"]
                    return order["state"] == "in_progress"

                await eventually(confirmed)


@pytest.mark.postgres
async def test_a_nul_character_in_a_path_or_query_is_bad_input_on_postgresql(
    postgres_engine: Engine, temporal_env: WorkflowEnvironment
) -> None:
    """PostgreSQL refuses to compare text holding NUL; the asker gets 422, not a server error."""
    async for shop in running_docket(postgres_engine, temporal_env.client, with_worker=False):
        transport = httpx.ASGITransport(app=create_app(shop.docket))
        async with httpx.AsyncClient(transport=transport, base_url="http://docket") as http:
            for url, params in (
                ("/orders/o%00", None),
                ("/orders", {"customer_id": "c\x00"}),
                ("/customers", {"q": "a\x00"}),
                ("/stock", {"sku": "W\x00"}),
            ):
                answer = await http.get(url, params=params, headers=as_("alice"))
                assert answer.status_code == 422, (url, answer.text)
                assert answer.json()["message"].startswith("a value the database cannot take: ")
