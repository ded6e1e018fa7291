"""Turning an outbox row into a mail: its template (the shop's own if it has one), money with its
currency, times in the shop's time zone, and a Message-ID derived from the row so that a mail sent
twice (a crash between the server's acceptance and docket's record) can be recognised as one.

A template is one Jinja2 file, templates/<recipient kind>/<template key>.j2, with three blocks:
`subject`, `text` and `html`. A shop overrides it with <overrides>/<shop id>/<kind>/<key>.j2, and
every shop at once with <overrides>/<kind>/<key>.j2.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, formataddr
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    PackageLoader,
    StrictUndefined,
    TemplateError,
    pass_context,
)
from jinja2.runtime import Context
from markupsafe import Markup, escape

from docket.models.notifications import template_name
from docket.store.outbox import Letter

PARTS = ("subject", "text", "html")
_UTF8 = Charset("utf-8")
_UTF8.body_encoding = QP  # readable in a maildir file, safe on any SMTP server
_BLANK_LINES = re.compile(r"\n{3,}")  # left by a paragraph whose condition did not hold
_EMPTY_PARAGRAPHS = re.compile(r"<p>\s*</p>\n?")


class RenderError(Exception):
    """A template that cannot be rendered: names the template and what is wrong."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


def message_id(key: str, domain: str) -> str:
    return f"<{hashlib.sha256(key.encode()).hexdigest()[:40]}@{domain}>"


class Renderer:
    def __init__(self, mail_from: str, overrides: Path | None = None):
        self.mail_from = mail_from
        self.domain = mail_from.rsplit("@", 1)[-1]
        loaders: list[Any] = [FileSystemLoader(overrides)] if overrides else []
        self.env = Environment(
            loader=ChoiceLoader([*loaders, PackageLoader("docket", "templates")]),
            undefined=StrictUndefined,
            autoescape=False,  # the html block turns escaping on for itself
            keep_trailing_newline=False,
        )
        self.env.filters |= {"money": money, "local": local, "localdate": localdate}
        self.env.globals |= {"lines_text": lines_text, "lines_html": lines_html}

    def render(self, shop_id: str, kind: str, key: str, data: dict[str, Any]) -> Rendered:
        name = template_name(kind, key)
        try:
            template = self.env.select_template([f"{shop_id}/{name}", name])
            missing = [part for part in PARTS if part not in template.blocks]
            if missing:
                raise RenderError(f"template {template.name} has no block {', '.join(missing)}")
            context = template.new_context(dict(data))
            parts = {part: "".join(template.blocks[part](context)).strip() for part in PARTS}
        except TemplateError as error:
            raise RenderError(f"template {name}: {error.message or type(error).__name__}") from None
        return Rendered(
            subject=" ".join(parts["subject"].split()),
            text=_BLANK_LINES.sub("\n\n", parts["text"]),
            html=_EMPTY_PARAGRAPHS.sub("", parts["html"]),
        )

    def compose(self, letter: Letter, rendered: Rendered) -> Message:
        """The MIME mail. Built with the compat32 classes: the modern EmailMessage API parses
        every header it is given and cost ten times the rendering."""
        # The boundary comes from the row too: no random one that must then be searched for in
        # the parts. "=_" cannot occur in a quoted-printable body ("=" is followed by hex digits).
        boundary = "=_" + hashlib.sha256(letter.key.encode()).hexdigest()[:32]
        mail = MIMEMultipart("alternative", boundary=boundary)
        mail["Subject"] = (
            Header(rendered.subject, "utf-8") if not rendered.subject.isascii() else rendered.subject  # type: ignore[assignment]
        )
        mail["From"] = formataddr((str(letter.data.get("shop_name") or ""), self.mail_from), "utf-8")
        mail["To"] = letter.recipient
        if letter.cc:
            mail["Cc"] = letter.cc
        mail["Message-ID"] = message_id(letter.key, self.domain)
        at = letter.data.get("at")
        mail["Date"] = format_datetime(dt.datetime.fromisoformat(at) if at else dt.datetime.now(dt.UTC))
        mail["MIME-Version"] = "1.0"
        mail["X-Docket-Order"] = letter.order_id
        mail["X-Docket-Template"] = f"{letter.kind}/{letter.template_key}"
        mail["X-Docket-Outbox"] = str(letter.outbox_id)
        # typeshed says a charset name; the email package takes a Charset too (here: quoted-printable)
        mail.attach(MIMEText(rendered.text + "\n", "plain", _UTF8))  # type: ignore[arg-type]
        mail.attach(MIMEText(rendered.html + "\n", "html", _UTF8))  # type: ignore[arg-type]
        return mail


# --- what templates may use ---------------------------------------------------------------------


def money(amount: Any, currency: str) -> str:
    """12.5, "EUR" -> "12.50 EUR"; never a float on the way."""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise ValueError(f"not an amount of money: {amount!r}") from None
    return f"{value:,.2f} {currency}"


def _zone(context: Context) -> ZoneInfo:
    return ZoneInfo(context.get("timezone") or "UTC")


@pass_context
def local(context: Context, moment: str | None) -> str:
    """An ISO time from the row, shown in the shop's time zone."""
    if not moment:
        return ""
    return dt.datetime.fromisoformat(moment).astimezone(_zone(context)).strftime("%d %b %Y, %H:%M %Z")


@pass_context
def localdate(context: Context, moment: str | None) -> str:
    if not moment:
        return ""
    return dt.datetime.fromisoformat(moment).astimezone(_zone(context)).strftime("%d %b %Y")


def lines_text(lines: list[dict[str, Any]], currency: str) -> str:
    width = max((len(line["name"]) for line in lines), default=0)
    return "\n".join(
        f"  {line['quantity']:>3} x {line['name']:<{width}}  ({line['sku']})"
        f"  {money(line['amount'], currency):>16}"
        for line in lines
    )


def lines_html(lines: list[dict[str, Any]], currency: str) -> Markup:
    rows = "".join(
        f"<tr><td>{line['quantity']}</td><td>{escape(line['name'])}</td><td>{escape(line['sku'])}</td>"
        f'<td style="text-align:right">{escape(money(line["amount"], currency))}</td></tr>'
        for line in lines
    )
    return Markup(
        f'<table cellpadding="4"><tr><th>Qty</th><th>Item</th><th>SKU</th><th>Amount</th></tr>{rows}</table>'
    )
