"""Mail over a real SMTP server (aiosmtpd) from orders on real Temporal: exactly the mails each move
should send, none lost while SMTP is down, none sent twice, failures recorded and reported once."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from docket.models.schemas import CancelOrder, MailState, RetryMail, ReturnOrder
from docket.store.tables import OutboxRow
from tests.conftest import Shop, eventually
from tests.orders import confirm, move, place
from tests.smtp import SmtpServer

ADA, ADMIN, NORTH = "ada@example.test", "admin@alpha.test", "ship-north@example.test"


async def mail_rows(shop: Shop, order_id: str | None = None) -> list[OutboxRow]:
    query = select(OutboxRow).order_by(OutboxRow.outbox_id)
    if order_id:
        query = query.where(OutboxRow.order_id == order_id)
    return await shop.docket.read(lambda s: list(s.scalars(query)))


async def all_settled(shop: Shop, order_id: str | None = None) -> bool:
    rows = await mail_rows(shop, order_id)
    return bool(rows) and all(r.state != MailState.pending for r in rows)


async def test_an_order_driven_through_every_move_sends_exactly_the_expected_mails(
    mailing_shop: Shop, smtp: SmtpServer
) -> None:
    shop = mailing_shop
    alice = await shop.op("alice")

    await shop.docket.place_order(alice, place("o-1", ("WIDGET", 2)))
    await confirm(shop, "o-1")
    await move(shop, "o-1", 1, "pack", "mark_ready", "ship", "deliver")
    await eventually(lambda: all_settled(shop, "o-1"))

    assert smtp.inbox.seen() == {
        (ADA, "customer/order_received", "o-1"),
        (ADMIN, "shop_admin/new_order", "o-1"),
        (ADMIN, "shop_admin/order_awaiting_confirmation", "o-1"),
        (ADA, "customer/order_confirmed", "o-1"),
        (ADMIN, "shop_admin/payment_confirmed", "o-1"),
        (ADMIN, "shop_admin/delivery_allocated", "o-1"),
        (NORTH, "fulfilment_centre/fulfilment_new_order", "o-1"),
        (ADMIN, "shop_admin/delivery_packing", "o-1"),
        (ADA, "customer/delivery_ready", "o-1"),
        (ADMIN, "shop_admin/delivery_ready", "o-1"),
        (ADA, "customer/delivery_shipped", "o-1"),
        (ADMIN, "shop_admin/delivery_shipping", "o-1"),
        (ADA, "customer/order_shipping_completed", "o-1"),
    }
    assert len(smtp.inbox.snapshot()) == 13, "no mail twice"
    assert all(r.state == MailState.sent and r.sent_at for r in await mail_rows(shop, "o-1"))


async def test_a_mail_reads_as_the_customer_expects_and_copies_the_operator_who_acted(
    mailing_shop: Shop, smtp: SmtpServer
) -> None:
    shop = mailing_shop
    await shop.docket.place_order(await shop.op("alice"), place("o-1", ("WIDGET", 2)))
    await shop.docket.place_order(await shop.op("web"), place("o-2", ("WIDGET", 1)))
    await eventually(lambda: all_settled(shop))

    received = {
        str(m["X-Docket-Order"]): m
        for m in smtp.inbox.snapshot()
        if m["X-Docket-Template"] == "customer/order_received"
    }
    mail = received["o-1"]
    assert mail["Subject"] == "Your order o-1 at Alpha"
    assert mail["From"] == "Alpha <docket@shop.test>"
    assert mail["Cc"] == "alice@alpha.test", "alice placed it for the customer"
    assert received["o-2"]["Cc"] is None, "the storefront acts for nobody"
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    html = mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "2 x Widget  (WIDGET)" in text and "19.00 EUR" in text
    assert "Total: 19.00 EUR" in text
    # the shop is in Europe/Berlin: times are shown there, with the zone
    assert " CET" in text or " CEST" in text
    assert "<td>Widget</td>" in html


@pytest.mark.parametrize("mailing_shop", [{"widget_on_hand": 100}], indirect=True)
async def test_smtp_down_during_a_batch_of_fifty_orders_then_up_every_mail_arrives_once(
    mailing_shop: Shop, smtp: SmtpServer
) -> None:
    shop = mailing_shop
    alice = await shop.op("alice")
    smtp.stop()

    for n in range(50):
        await shop.docket.place_order(alice, place(f"o-{n}", ("WIDGET", 1)))
    rows = await mail_rows(shop)
    assert len(rows) == 150  # order_received, new_order, order_awaiting_confirmation each

    async def every_order_tried() -> bool:
        tried = {r.order_id for r in await mail_rows(shop) if r.attempts >= 1}
        return len(tried) == 50

    await eventually(every_order_tried, timeout=60)
    waiting = await mail_rows(shop)
    assert all(r.state == MailState.pending for r in waiting), "a refused connection is not a failure"
    assert "unavailable" in (waiting[0].error or "")
    assert smtp.inbox.snapshot() == []

    smtp.start()
    await eventually(lambda: all_settled(shop), timeout=120)
    copies = smtp.inbox.copies()
    assert len(copies) == 150
    assert max(copies.values()) == 1
    assert all(r.state == MailState.sent for r in await mail_rows(shop))


async def test_a_mail_refused_for_good_is_failed_with_the_reason_and_the_admin_is_told_once(
    mailing_shop: Shop, smtp: SmtpServer
) -> None:
    shop = mailing_shop
    alice = await shop.op("alice")
    smtp.inbox.refuse[ADA] = "550 5.1.1 no such mailbox"

    await shop.docket.place_order(alice, place("o-1", ("WIDGET", 1)))
    await eventually(lambda: all_settled(shop, "o-1"))
    [received] = [r for r in await mail_rows(shop, "o-1") if r.template_key == "order_received"]
    assert received.state == MailState.failed
    assert "550" in (received.error or "") and ADA in (received.error or "")

    reports = [m for m in smtp.inbox.snapshot() if m["X-Docket-Template"] == "shop_admin/mail_failed"]
    assert [str(m["To"]) for m in reports] == [ADMIN]
    body = reports[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert (
        "customer/order_received" in body
        and "550" in body
        and f"docket mail retry {received.outbox_id}" in body
    )

    # retried while the address still bounces: failed again, and the admin is not told twice
    retried = await shop.docket.retry_mail(alice, RetryMail(outbox_ids=[received.outbox_id]))
    assert retried.retried == [received.outbox_id]

    async def failed_twice() -> bool:
        [row] = [r for r in await mail_rows(shop, "o-1") if r.outbox_id == received.outbox_id]
        return row.state == MailState.failed and row.attempts == 2

    await eventually(failed_twice)
    reports = [m for m in smtp.inbox.snapshot() if m["X-Docket-Template"] == "shop_admin/mail_failed"]
    assert len(reports) == 1

    # the mailbox is fixed: the retry delivers it
    del smtp.inbox.refuse[ADA]
    await shop.docket.retry_mail(alice, RetryMail(order_id="o-1"))
    await eventually(lambda: all_settled(shop, "o-1"))
    assert (ADA, "customer/order_received", "o-1") in smtp.inbox.seen()


async def test_a_retry_after_the_order_closed_is_delivered_by_a_mail_workflow(
    mailing_shop: Shop, smtp: SmtpServer
) -> None:
    shop = mailing_shop
    alice = await shop.op("alice")
    smtp.inbox.refuse[ADA] = "550 5.1.1 no such mailbox"
    await shop.docket.place_order(alice, place("o-1", ("WIDGET", 1)))
    await shop.docket.cancel_order(alice, CancelOrder(order_id="o-1", operator_id="alice", reason="test"))
    handle = shop.client.get_workflow_handle(f"{shop.docket.workflow_id_prefix}order-o-1")
    await handle.result()  # the order's workflow has closed

    del smtp.inbox.refuse[ADA]
    retried = await shop.docket.retry_mail(alice, RetryMail(order_id="o-1"))
    assert len(retried.retried) == 2  # order_received and order_cancelled to the customer
    await eventually(lambda: all_settled(shop, "o-1"))
    assert {t for to, t, _ in smtp.inbox.seen() if to == ADA} == {
        "customer/order_received",
        "customer/order_cancelled",
    }


@pytest.mark.parametrize("mailing_shop", [{"widget_on_hand": 0, "widget_backorder": True}], indirect=True)
async def test_stock_that_cannot_be_allocated_is_reported_once_per_delivery(
    mailing_shop: Shop, smtp: SmtpServer
) -> None:
    shop = mailing_shop
    alice = await shop.op("alice")
    await shop.docket.place_order(alice, place("o-1", ("WIDGET", 1)))
    await confirm(shop, "o-1")  # paid, and the back order waits for stock
    await eventually(lambda: all_settled(shop, "o-1"))

    waits = [
        m for m in smtp.inbox.snapshot() if m["X-Docket-Template"] == "shop_admin/stock_cannot_be_allocated"
    ]
    assert [str(m["To"]) for m in waits] == [ADMIN]


@pytest.mark.parametrize("mailing_shop", [{"templates": "tmp"}], indirect=True)
async def test_a_template_that_does_not_render_fails_its_mail_with_the_reason_and_nothing_else(
    mailing_shop: Shop, smtp: SmtpServer, tmp_path: Path
) -> None:
    shop = mailing_shop
    broken = tmp_path / "alpha" / "customer" / "order_received.j2"
    broken.parent.mkdir(parents=True)
    broken.write_text(
        "{% block subject %}Parcel {{ tracking }}{% endblock %}{% block text %}x{% endblock %}"
        "{% block html %}x{% endblock %}"
    )
    await shop.docket.place_order(await shop.op("alice"), place("o-1", ("WIDGET", 1)))
    await eventually(lambda: all_settled(shop, "o-1"))

    [received] = [r for r in await mail_rows(shop, "o-1") if r.template_key == "order_received"]
    assert received.state == MailState.failed
    assert received.error == "template customer/order_received.j2: 'tracking' is undefined"
    assert smtp.inbox.seen() >= {
        (ADMIN, "shop_admin/new_order", "o-1"),
        (ADMIN, "shop_admin/mail_failed", "o-1"),
    }
    assert (ADA, "customer/order_received", "o-1") not in smtp.inbox.seen()


@pytest.mark.parametrize("mailing_shop", [{"return_days": 30}], indirect=True)
async def test_cancelling_and_returning_tell_the_customer_and_the_admins(
    mailing_shop: Shop, smtp: SmtpServer
) -> None:
    shop = mailing_shop
    alice = await shop.op("alice")
    await shop.docket.place_order(alice, place("o-1", ("WIDGET", 1)))
    await shop.docket.cancel_order(
        alice, CancelOrder(order_id="o-1", operator_id="alice", reason="changed mind")
    )
    await shop.docket.place_order(alice, place("o-2", ("WIDGET", 1)))
    await confirm(shop, "o-2")
    await move(shop, "o-2", 1, "pack", "mark_ready", "ship", "deliver")
    await shop.docket.return_order(alice, ReturnOrder(order_id="o-2", operator_id="alice", note="too small"))
    await eventually(lambda: all_settled(shop))

    seen = smtp.inbox.seen()
    assert {(ADA, "customer/order_cancelled", "o-1"), (ADMIN, "shop_admin/order_cancelled", "o-1")} <= seen
    assert {(ADA, "customer/order_returned", "o-2"), (ADMIN, "shop_admin/order_returned", "o-2")} <= seen
    cancelled = next(m for m in smtp.inbox.snapshot() if m["X-Docket-Template"] == "customer/order_cancelled")
    assert "changed mind" in cancelled.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert len(smtp.inbox.snapshot()) == len(smtp.inbox.copies()), "no mail twice"
