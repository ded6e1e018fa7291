"""Which move sends which mail, the templates, and how they render."""

from __future__ import annotations

import asyncio
import email
import email.policy
from dataclasses import replace
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest

from docket import rendering
from docket.activities.mail import deliver
from docket.adapters.mail import Mail, MaildirTransport
from docket.models.lifecycles import DELIVERY, ORDER
from docket.models.notifications import MAIL_FAILED, NOTIFY, PAYMENT_FACTS, every_template, template_name
from docket.rendering import Renderer, RenderError, lines_text, message_id, money
from docket.store.outbox import Letter

TEMPLATES = Path(__file__).parents[2] / "docket" / "templates"


def sample(**extra: Any) -> dict[str, Any]:
    """What the store writes for a delivery move of an offline order (see store/outbox.py)."""
    return {
        "order_id": "o-1",
        "shop_id": "alpha",
        "shop_name": "Alpha & Sons",
        "timezone": "Europe/Berlin",
        "customer_name": "Ada <Buyer>",
        "state": "in_progress",
        "payment_flow": "offline",
        "total": "1234.5",
        "currency": "EUR",
        "placed_at": "2026-11-23T09:00:00+00:00",
        "payment_deadline": "2026-11-26T09:00:00+00:00",
        "shipping_address": {
            "name": "Ada",
            "line1": "1 Main St",
            "city": "Berlin",
            "postcode": "10115",
            "country": "DE",
        },
        "trigger": "ship",
        "at": "2026-07-01T12:00:00+00:00",
        "note": None,
        "lines": [
            {
                "line_no": 1,
                "sku": "WIDGET",
                "name": "Widget",
                "quantity": 2,
                "unit_price": "9.50",
                "amount": "19.00",
                "delivery_no": 1,
            }
        ],
        "delivery_no": 1,
        "delivery_group": "D1",
        "warehouse_id": "north",
        "warehouse_name": "North",
        "delivery_state": "shipping",
        "release_at": None,
        "failed_outbox_id": 7,
        "failed_recipient": "ada@example.test",
        "failed_template": "customer/order_received",
        "reason": "550 no such mailbox",
        **extra,
    }


def test_every_notifying_move_is_a_trigger_of_its_lifecycle_or_a_payment_fact() -> None:
    triggers = {
        "order": {str(t["trigger"]) for t in ORDER.table} | {"place"},  # placing creates the order
        "delivery": {str(t["trigger"]) for t in DELIVERY.table},
        "payment": set(PAYMENT_FACTS),
    }
    unknown = [key for key in NOTIFY if key[1] not in triggers.get(key[0], set())]
    assert unknown == []


def test_every_template_key_has_a_template_and_every_template_is_sent_by_some_move() -> None:
    on_disk = {
        (path.parent.name, path.stem) for path in TEMPLATES.glob("*/*.j2") if not path.name.startswith("_")
    }
    wanted = {(kind.value, key) for kind, key in every_template()}
    assert wanted - on_disk == set(), "keys without a template"
    assert on_disk - wanted == set(), "templates no move sends"


@pytest.mark.parametrize("kind,key", sorted((k.value, t) for k, t in every_template()))
def test_every_template_renders_a_subject_a_text_and_an_escaped_html_part(kind: str, key: str) -> None:
    rendered = Renderer("docket@shop.test").render("alpha", kind, key, sample())
    assert rendered.subject and "\n" not in rendered.subject
    assert "o-1" in rendered.subject + rendered.text
    assert rendered.text and rendered.html
    assert "<Buyer>" not in rendered.html and "Alpha & Sons" not in rendered.html, "HTML is escaped"


def test_a_digital_delivery_is_told_as_downloads_not_as_a_parcel() -> None:
    renderer = Renderer("docket@shop.test")
    parcel = renderer.render("alpha", "customer", "delivery_shipped", sample())
    assert parcel.subject == "Order o-1: parcel 1 is on its way"
    downloads = renderer.render("alpha", "customer", "delivery_shipped", sample(delivery_group="D4"))
    assert downloads.subject == "Order o-1: your downloads are ready"
    assert "your downloads of order o-1 are ready" in downloads.text
    assert "parcel" not in downloads.subject + downloads.text + downloads.html


def test_an_orders_lines_in_a_text_mail_keep_their_amounts_in_one_column() -> None:
    lines = [
        {"quantity": 1, "name": "Harbour Atlas (hardback)", "sku": "ATLAS", "amount": "39.90"},
        {"quantity": 2, "name": "Reading lamp", "sku": "LAMP", "amount": "50.00"},
        {"quantity": 12, "name": "Harbour Atlas (e-book)", "sku": "EBOOK-1", "amount": "1234.5"},
    ]
    text = lines_text(lines, "EUR").splitlines()
    assert text[2] == "   12 x Harbour Atlas (e-book)  (EBOOK-1)  1,234.50 EUR"
    assert len({len(row) for row in text}) == 1, text  # every amount ends in one column
    assert [row.index(" x ") for row in text] == [5, 5, 5]


def test_money_is_written_as_its_currency_is() -> None:
    assert money("1234.5", "EUR") == "1,234.50 EUR"
    assert money("3980.00", "JPY") == "3,980 JPY"  # the store keeps two places; a yen has none
    with pytest.raises(ValueError, match="not an amount"):
        money("ten", "EUR")


def test_times_are_shown_in_the_shops_time_zone() -> None:
    text = Renderer("docket@shop.test").render("alpha", "shop_admin", "delivery_shipping", sample()).text
    assert "01 Jul 2026, 14:00 CEST" in text  # 12:00 UTC in Berlin, summer time


def test_a_missing_value_names_the_template_and_the_value() -> None:
    data = sample()
    del data["delivery_no"]
    with pytest.raises(
        RenderError, match=r"template customer/delivery_shipped.j2: 'delivery_no' is undefined"
    ):
        Renderer("docket@shop.test").render("alpha", "customer", "delivery_shipped", data)


def test_a_shop_overrides_a_template_and_other_shops_keep_the_default(tmp_path: Path) -> None:
    own = tmp_path / "alpha" / template_name("customer", "order_received")
    own.parent.mkdir(parents=True)
    own.write_text(
        "{% block subject %}Danke, {{ customer_name }}{% endblock %}"
        "{% block text %}Bestellung {{ order_id }}{% endblock %}"
        "{% block html %}<p>Bestellung {{ order_id }}</p>{% endblock %}"
    )
    renderer = Renderer("docket@shop.test", tmp_path)
    assert renderer.render("alpha", "customer", "order_received", sample()).subject == "Danke, Ada <Buyer>"
    assert renderer.render("beta", "customer", "order_received", sample()).subject.startswith(
        "Your order o-1"
    )


def test_an_override_added_while_running_is_used_within_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(rendering.time, "monotonic", lambda: clock[0])
    renderer = Renderer("docket@shop.test", tmp_path)
    assert renderer.render("alpha", "customer", "order_received", sample()).subject.startswith("Your order")
    own = tmp_path / "alpha" / template_name("customer", "order_received")
    own.parent.mkdir(parents=True)
    own.write_text(
        "{% block subject %}Danke{% endblock %}{% block text %}x{% endblock %}{% block html %}y{% endblock %}"
    )
    clock[0] += rendering.RESOLVED_FOR / 2  # which file is the template: not looked up again yet
    assert renderer.render("alpha", "customer", "order_received", sample()).subject.startswith("Your order")
    clock[0] += rendering.RESOLVED_FOR
    assert renderer.render("alpha", "customer", "order_received", sample()).subject == "Danke"


def test_a_template_without_a_part_is_refused_by_name(tmp_path: Path) -> None:
    own = tmp_path / "alpha" / template_name("customer", "order_received")
    own.parent.mkdir(parents=True)
    own.write_text("{% block subject %}Hi{% endblock %}{% block text %}x{% endblock %}")
    with pytest.raises(RenderError, match="has no block html"):
        Renderer("docket@shop.test", tmp_path).render("alpha", "customer", "order_received", sample())


def letter(outbox_id: int = 1, recipient: str = "ada@example.test") -> Letter:
    return Letter(
        outbox_id,
        f"m1|-|customer|{recipient}|order_received",
        "o-1",
        "alpha",
        "customer",
        recipient,
        None,
        "order_received",
        sample(),
    )


def compose(item: Letter) -> Mail:
    renderer = Renderer("docket@shop.test")
    return renderer.compose(item, renderer.render("alpha", item.kind, item.template_key, item.data))


def read(data: bytes) -> EmailMessage:
    """As a mail client reads it: encoded words decoded, each part's text decoded."""
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def sender(data: bytes) -> tuple[str, str]:
    """The From header's name and address. Read with RFC 2047's rule that the space between two
    encoded words is not text: the email package's address parser keeps it."""
    raw = email.message_from_bytes(data)["From"]
    return parseaddr(str(make_header(decode_header(raw))))


def test_the_message_id_comes_from_the_row_so_a_resent_mail_is_the_same_mail() -> None:
    first, again = compose(letter()), compose(letter())
    assert first.message_id == again.message_id == message_id(letter().key, "shop.test")
    assert first.data == again.data  # the Date too comes from the row
    assert read(first.data)["Message-ID"] == first.message_id
    assert read(first.data)["X-Docket-Template"] == "customer/order_received"


def test_the_maildir_keeps_one_file_per_mail_however_often_it_is_sent(tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path / "mail")
    mail = compose(letter())
    for _ in range(2):
        [sent] = asyncio.run(transport.send([(1, mail)]))
        assert sent.ok
    [file] = (tmp_path / "mail" / "new").iterdir()
    assert b"Subject: Your order o-1 at" in file.read_bytes()


@pytest.mark.parametrize("kind,key", sorted((k.value, t) for k, t in every_template()))
@pytest.mark.parametrize("shop_name", ["Alpha & Sons", "Bäckerei Müller \u2013 Fürth " * 4])
def test_every_mail_reads_back_as_rendered_in_well_formed_mime(
    tmp_path: Path, kind: str, key: str, shop_name: str
) -> None:
    item = Letter(
        1, f"m1|-|{kind}|x@y.test|{key}", "o-1", "alpha", kind, "x@y.test", "cc@y.test", key, sample()
    )
    item = replace(item, data={**item.data, "shop_name": shop_name})  # non-ASCII and folded headers
    renderer = Renderer("docket@shop.test")
    rendered = renderer.render("alpha", kind, key, item.data)
    transport = MaildirTransport(tmp_path / "mail")
    [sent] = asyncio.run(transport.send([(1, renderer.compose(item, rendered))]))
    assert sent.ok
    [file] = (tmp_path / "mail" / "new").iterdir()
    data = file.read_bytes()
    mail = read(data)
    assert (mail["Subject"], sender(data)) == (rendered.subject, (shop_name.strip(), "docket@shop.test"))
    assert (mail["To"], mail["Cc"]) == ("x@y.test", "cc@y.test")
    assert (mail["X-Docket-Order"], mail["X-Docket-Outbox"], mail["MIME-Version"]) == ("o-1", "1", "1.0")
    assert mail.get_content_type() == "multipart/alternative"
    text, html = mail.iter_parts()
    assert (text.get_content_type(), text.get_content()) == ("text/plain", rendered.text + "\n")
    assert (html.get_content_type(), html.get_content()) == ("text/html", rendered.html + "\n")
    names = [name.lower() for name, _ in mail.items()]
    assert len(names) == len(set(names)), f"a header given twice: {names}"
    assert not [part.defects for part in mail.walk() if part.defects]
    assert data.isascii() and max(len(line) for line in data.splitlines()) <= 78


def test_a_line_break_in_a_shops_name_adds_no_header_of_its_own() -> None:
    item = replace(letter(), data={**sample(), "shop_name": "Evil\nBcc: victim@y.test"})
    data = compose(item).data
    assert sender(data) == ("Evil Bcc: victim@y.test", "docket@shop.test")
    assert read(data)["Bcc"] is None


def test_an_invalid_address_fails_for_good_without_being_sent(tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path / "mail")
    [outcome] = asyncio.run(
        deliver([letter(recipient="not an address")], Renderer("docket@shop.test"), transport)
    )
    assert (outcome.sent, outcome.permanent) == (False, True)
    assert outcome.error == "invalid To address 'not an address'"
    assert not (tmp_path / "mail" / "new").exists() or list((tmp_path / "mail" / "new").iterdir()) == []


def test_the_report_of_a_failed_mail_is_itself_a_template() -> None:
    kind, key = MAIL_FAILED
    text = Renderer("docket@shop.test").render("alpha", kind.value, key, sample()).text
    assert "550 no such mailbox" in text and "docket mail retry 7" in text
