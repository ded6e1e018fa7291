"""`docket sandbox-gateway`: a simulated card gateway that really runs as an HTTP service, with its
own books, for the demo, the tests and anyone trying docket without a real gateway.

It answers `POST /v1/<operation>` (a `Charge`), once per idempotency key (the same key again gets
the first answer and moves no money), and afterwards sends signed callbacks to docket. The payment
token decides what happens, as a real sandbox's test cards do:

    tok_ok           approved (the default)
    tok_declined     declined
    tok_review_ok    held for fraud review: `processing` now, `ok` by callback later
    tok_review_fail  held for fraud review: `processing` now, `failed` by callback later
    tok_late_fail    approved, and later a `failed` callback for the same payment (which docket
                     must record and otherwise ignore)
    tok_refund_fail  approved; the first two refunds asked for the order are refused
    tok_capture_fail authorized; the first capture asked for the order is refused
    tok_batch        approved; captures stay unsettled until the end-of-day batch
                     (`POST /batch`), and until then a capture is voided, not refunded

Options make the callbacks arrive late (`delay`), several times (`copies`) and out of order
(`shuffle`), and the answers themselves late (`answer_delay`: the money has moved before the caller
hears of it). `POST /batch` settles the open captures and tells docket (`?notify=false`: the
notice is lost). `GET /books/<order id>` answers what the gateway holds as captured and refunded.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from docket.adapters.payments import signed_headers
from docket.models.payments import CAPTURES, REFUNDS, Answer, CallbackFact, Charge, Operation, Result

REVIEW = {"tok_review_ok": Result.ok, "tok_review_fail": Result.failed}


class BooksView(BaseModel):
    order_id: str
    captured: Decimal
    refunded: Decimal


@dataclass
class Books:
    answers: dict[str, Answer] = field(default_factory=dict)
    moved: list[tuple[str, Operation, Decimal]] = field(default_factory=list)  # what took effect
    refunds_asked: dict[str, int] = field(default_factory=dict)
    captures_asked: dict[str, int] = field(default_factory=dict)
    unsettled: dict[str, Charge] = field(default_factory=dict)  # captures the batch has not settled

    def view(self, order_id: str) -> BooksView:
        captured = refunded = Decimal("0.00")
        for order, operation, amount in self.moved:
            if order != order_id:
                continue
            if operation in CAPTURES:
                captured += amount
            elif operation is Operation.void_capture:
                captured -= amount
            elif operation in REFUNDS:
                refunded += amount
        return BooksView(order_id=order_id, captured=captured, refunded=refunded)


def create_sandbox(
    callback_url: str | None,
    secret: str,
    delay: float = 0.2,
    copies: int = 1,
    shuffle: bool = False,
    answer_delay: float = 0.0,
) -> FastAPI:
    app = FastAPI(title="docket sandbox gateway", version="0.1.0")
    books = Books()
    tasks: set[asyncio.Task[None]] = set()
    app.state.books = books

    def later(fact: CallbackFact, after: float) -> None:
        if callback_url is None:
            return
        for _ in range(copies):
            wait = after + (random.uniform(0, delay) if shuffle else 0)
            task = asyncio.create_task(_send(callback_url, secret, fact, wait))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

    def fact(charge: Charge, answer: Answer, result: Result, n: int | str) -> CallbackFact:
        captured = charge.operation in CAPTURES and result is Result.ok
        return CallbackFact(
            event_id=f"evt-{answer.reference}-{n}",
            shop_id=charge.shop_id,
            order_id=charge.order_id,
            operation=charge.operation,
            amount=charge.amount,
            currency=charge.currency,
            result=result,
            reference=answer.reference,
            idempotency_key=charge.idempotency_key,
            settled=answer.settled if captured else None,
        )

    @app.post("/v1/{operation}", response_model=Answer)
    async def operate(operation: Operation, charge: Charge) -> Answer:
        if charge.idempotency_key in books.answers:
            return books.answers[charge.idempotency_key]
        answer = Answer(result=Result.ok, reference=f"sbx_{uuid.uuid4().hex[:12]}")
        token = charge.token or "tok_ok"
        if operation in (Operation.authorize, Operation.authorize_capture):
            if token == "tok_declined":
                answer = answer.model_copy(update={"result": Result.failed, "message": "card declined"})
            elif token in REVIEW:
                answer = answer.model_copy(update={"result": Result.processing, "message": "fraud review"})
        if operation is Operation.capture and token == "tok_capture_fail":
            books.captures_asked[charge.order_id] = books.captures_asked.get(charge.order_id, 0) + 1
            if books.captures_asked[charge.order_id] == 1:
                answer = answer.model_copy(update={"result": Result.failed, "message": "insufficient funds"})
        if operation in CAPTURES and token == "tok_batch" and answer.result is Result.ok:
            answer = answer.model_copy(update={"settled": False})  # settled by the next batch
            books.unsettled[answer.reference] = charge  # type: ignore[index]
        if operation is Operation.void_capture:
            if books.unsettled.pop(charge.reference or "", None) is None:
                message = f"capture {charge.reference} is settled (or unknown): refund it instead"
                answer = answer.model_copy(update={"result": Result.failed, "message": message})
        if operation is Operation.refund:
            held = books.view(charge.order_id)
            books.refunds_asked[charge.order_id] = books.refunds_asked.get(charge.order_id, 0) + 1
            if token == "tok_refund_fail" and books.refunds_asked[charge.order_id] <= 2:
                answer = answer.model_copy(update={"result": Result.failed, "message": "issuer unavailable"})
            elif charge.amount > held.captured - held.refunded:
                answer = answer.model_copy(
                    update={"result": Result.failed, "message": "refund exceeds what was captured"}
                )
        books.answers[charge.idempotency_key] = answer
        if answer.result is Result.ok:
            books.moved.append((charge.order_id, operation, charge.amount))
            later(fact(charge, answer, Result.ok, 0), delay)
            if token == "tok_late_fail" and operation in CAPTURES:
                later(fact(charge, answer, Result.failed, 1), 2 * delay)
        elif answer.result is Result.processing:
            final = REVIEW[token]
            if final is Result.ok:
                books.moved.append((charge.order_id, operation, charge.amount))
            later(fact(charge, answer, final, 0), delay)
        if answer_delay:  # the money has moved; the caller hears of it only now
            await asyncio.sleep(answer_delay)
        return answer

    @app.post("/batch")
    async def batch(notify: bool = True) -> dict[str, int]:
        """The end of the day: every open capture is settled (and docket told, unless `notify` is
        false: a settlement notice lost on its way)."""
        settled = list(books.unsettled.values())
        books.unsettled.clear()
        for charge in settled:
            answer = books.answers[charge.idempotency_key]
            if notify:
                later(fact(charge, answer.model_copy(update={"settled": True}), Result.ok, "settled"), delay)
        return {"settled": len(settled)}

    @app.get("/books/{order_id}", response_model=BooksView)
    async def books_of(order_id: str) -> BooksView:
        return books.view(order_id)

    return app


async def _send(url: str, secret: str, fact: CallbackFact, after: float) -> None:
    """Deliver one callback, as gateways do: retried while docket answers 5xx or cannot be reached."""
    await asyncio.sleep(after)
    body = fact.model_dump_json().encode()
    async with httpx.AsyncClient(timeout=10) as client:
        for attempt in range(8):
            try:
                response = await client.post(
                    url, content=body, headers=signed_headers(secret, int(time.time()), body)
                )
                if response.status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2 * 2**attempt)
