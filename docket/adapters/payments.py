"""Payment gateways behind one protocol, and the signature every gateway callback carries.

Every call carries an idempotency key that the workflow makes once per operation and reuses on
every retry, so a retried call is the same charge or refund, never a second one. A gateway answers
`ok`, `failed`, `processing` (the result comes later, as a callback) or `manual_required`.

Callbacks are signed: `X-Signature-Timestamp` (Unix seconds) and `X-Signature`
(`sha256=` + hex HMAC-SHA256 over `<timestamp>.` followed by the raw body), with a secret per shop
and gateway.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Protocol

import httpx
from pydantic import ValidationError

from docket.models.inputs import NUL, problems
from docket.models.payments import Answer, CallbackFact, Charge, Operation, Result

SIGNATURE = "X-Signature"
TIMESTAMP = "X-Signature-Timestamp"
TOLERANCE_SECONDS = 300


class BadCallback(Exception):
    """A callback docket cannot take: says why (bad signature, stale, malformed)."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status


class PaymentGateway(Protocol):
    name: str

    async def authorize(self, charge: Charge) -> Answer: ...
    async def reverse_authorization(self, charge: Charge) -> Answer: ...
    async def capture(self, charge: Charge) -> Answer: ...
    async def authorize_capture(self, charge: Charge) -> Answer: ...
    async def void_capture(self, charge: Charge) -> Answer: ...
    async def refund(self, charge: Charge) -> Answer: ...
    def parse_callback(self, body: bytes) -> CallbackFact: ...


async def call(gateway: PaymentGateway, charge: Charge) -> Answer:
    operations = {
        Operation.authorize: gateway.authorize,
        Operation.reverse_authorization: gateway.reverse_authorization,
        Operation.capture: gateway.capture,
        Operation.authorize_capture: gateway.authorize_capture,
        Operation.void_capture: gateway.void_capture,
        Operation.refund: gateway.refund,
    }
    if charge.operation not in operations:
        raise ValueError(f"{charge.operation.value} is recorded by docket, not asked of a gateway")
    return await operations[charge.operation](charge)


# --- signatures ---------------------------------------------------------------------------------


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    return {
        TIMESTAMP: str(timestamp),
        SIGNATURE: sign(secret, timestamp, body),
        "Content-Type": "application/json",
    }


def verify(secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float) -> None:
    """Raise BadCallback (401) unless the signature is the secret's over this timestamp and body,
    and the timestamp is within five minutes of now."""
    if not timestamp or not signature:
        raise BadCallback(401, f"unsigned: {TIMESTAMP} and {SIGNATURE} headers are required")
    try:
        moment = int(timestamp)
    except ValueError:
        raise BadCallback(401, f"{TIMESTAMP} must be Unix seconds, not {timestamp!r}") from None
    if abs(now - moment) > TOLERANCE_SECONDS:
        raise BadCallback(401, f"stale: signed {int(now - moment)} s ago; at most {TOLERANCE_SECONDS} s")
    if not hmac.compare_digest(sign(secret, moment, body), signature):
        raise BadCallback(401, "the signature does not match this body and timestamp")


def parse_fact(body: bytes) -> CallbackFact:
    try:
        return CallbackFact.model_validate(_json(body))
    except ValidationError as error:
        raise BadCallback(422, f"not a payment callback: {problems(error.errors())}") from None


def shop_of(body: bytes) -> str:
    """The shop a callback claims to be for, read before its signature is checked (to find the
    secret); nothing else is believed until then."""
    found = _json(body)
    if not isinstance(found, dict):
        raise BadCallback(400, "the body is not a JSON object")
    shop = found.get("shop_id")
    if shop is None or shop == "":
        raise BadCallback(422, "the body has no shop_id: the id of the shop the payment is for")
    if not isinstance(shop, str):
        raise BadCallback(422, f"shop_id must be the shop's id as a string, not {json.dumps(shop)[:40]}")
    if NUL in shop:
        raise BadCallback(422, "shop_id may not contain the NUL character (\\u0000)")
    return shop


def _json(body: bytes) -> Any:
    """JSON between systems is UTF-8 (RFC 8259). `json.loads` would also take UTF-16 and UTF-32
    bytes, whose text no store keeps as it came."""
    try:
        return json.loads(body.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadCallback(400, "the body is not UTF-8 JSON") from None


# --- gateways -----------------------------------------------------------------------------------


class OfflineGateway:
    """Invoice, bank transfer, pay in store, courier cash: nothing to call. Authorizations and
    captures are approved at once (an invoice); money goes back by hand (manual_required)."""

    name = "offline"

    async def authorize(self, charge: Charge) -> Answer:
        return Answer(result=Result.ok, reference=f"offline-{charge.idempotency_key}")

    reverse_authorization = capture = authorize_capture = void_capture = authorize

    async def refund(self, charge: Charge) -> Answer:
        return Answer(result=Result.manual_required, message="refund by hand, then record it")

    def parse_callback(self, body: bytes) -> CallbackFact:
        raise BadCallback(404, "the offline gateway sends no callbacks")


class SandboxGateway:
    """The client of docket's simulated card gateway (`docket sandbox-gateway`)."""

    name = "sandbox"

    def __init__(self, base_url: str, timeout: float = 10.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout

    async def _post(self, charge: Charge) -> Answer:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=self.timeout) as client:
            response = await client.post(
                f"/v1/{charge.operation.value}",
                content=charge.model_dump_json(),
                headers={"Content-Type": "application/json"},
            )
        if response.status_code >= 500:
            response.raise_for_status()  # retried: the idempotency key makes it the same call
        if response.status_code >= 400:
            return Answer(result=Result.failed, message=f"{response.status_code} {response.text}")
        return Answer.model_validate_json(response.content)

    authorize = reverse_authorization = capture = authorize_capture = void_capture = refund = _post

    def parse_callback(self, body: bytes) -> CallbackFact:
        return parse_fact(body)


GATEWAYS = ("offline", "sandbox")  # what a shop may name: every worker has each of them


def default_gateways(sandbox_url: str = "http://127.0.0.1:8099") -> dict[str, PaymentGateway]:
    return {"offline": OfflineGateway(), "sandbox": SandboxGateway(sandbox_url)}
