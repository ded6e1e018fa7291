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
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from email import quoprimime
from email.header import Header
from email.policy import Compat32
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
    Template,
    TemplateError,
    pass_context,
)
from jinja2.runtime import Context
from markupsafe import Markup, escape

from docket.adapters.mail import Mail
from docket.models.currencies import amount_text
from docket.models.notifications import template_name
from docket.store.outbox import Letter

PARTS = ("subject", "text", "html")
# How long a renderer trusts which file a shop's template is (its own, every shop's, docket's):
# a lookup probes the override folders and the package for each name, a fifth of a mail's
# rendering. An override added or edited is used within this many seconds.
RESOLVED_FOR = 5.0
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
        self._resolved: dict[tuple[str, str], tuple[float, Template]] = {}

    def render(self, shop_id: str, kind: str, key: str, data: dict[str, Any]) -> Rendered:
        name = template_name(kind, key)
        try:
            template = self._template(shop_id, name)
            context = template.new_context(dict(data))
            parts = {part: "".join(template.blocks[part](context)).strip() for part in PARTS}
        except TemplateError as error:
            raise RenderError(f"template {name}: {error.message or type(error).__name__}") from None
        return Rendered(
            subject=" ".join(parts["subject"].split()),
            text=_BLANK_LINES.sub("\n\n", parts["text"]),
            html=_EMPTY_PARAGRAPHS.sub("", parts["html"]),
        )

    def _template(self, shop_id: str, name: str) -> Template:
        """The shop's own template, else every shop's, else docket's; checked for its blocks."""
        now = time.monotonic()
        found = self._resolved.get((shop_id, name))
        if found is not None and now - found[0] < RESOLVED_FOR:
            return found[1]
        template = self.env.select_template([f"{shop_id}/{name}", name])
        missing = [part for part in PARTS if part not in template.blocks]
        if missing:
            raise RenderError(f"template {template.name} has no block {', '.join(missing)}")
        self._resolved[(shop_id, name)] = (now, template)
        return template

    def compose(self, letter: Letter, rendered: Rendered) -> Mail:
        """The MIME mail: multipart/alternative, a text and an HTML part, both UTF-8 in
        quoted-printable (readable in a maildir file, safe on any SMTP server). Written out
        directly: the email package's classes and generator cost six times as much, for bytes
        the same but for the MIME-Version header each of its parts repeats."""
        # The boundary comes from the row too: no random one that must then be searched for in
        # the parts. "=_" cannot occur in a quoted-printable body ("=" is followed by hex digits).
        boundary = "=_" + hashlib.sha256(letter.key.encode()).hexdigest()[:32]
        mail_id = message_id(letter.key, self.domain)
        at = letter.data.get("at")
        headers = [
            ("Subject", rendered.subject),
            ("From", _sender(_one_line(letter.data.get("shop_name")), self.mail_from)),
            ("To", letter.recipient),
            *([("Cc", letter.cc)] if letter.cc else []),
            ("Message-ID", mail_id),
            ("Date", format_datetime(dt.datetime.fromisoformat(at) if at else dt.datetime.now(dt.UTC))),
            ("X-Docket-Order", letter.order_id),
            ("X-Docket-Template", f"{letter.kind}/{letter.template_key}"),
            ("X-Docket-Outbox", str(letter.outbox_id)),
        ]
        data = b"".join(
            [
                f'Content-Type: multipart/alternative;\n boundary="{boundary}"\nMIME-Version: 1.0\n'.encode(),
                *(_HEADERS.fold_binary(name, value) for name, value in headers),
                f"\n--{boundary}\n".encode(),
                _text_part("plain", rendered.text),
                f"\n--{boundary}\n".encode(),
                _text_part("html", rendered.html),
                f"\n--{boundary}--\n".encode(),
            ]
        )
        recipients = [letter.recipient, *([letter.cc] if letter.cc else [])]
        return Mail(mail_id, self.mail_from, recipients, data)


class _Headers(Compat32):
    """Headers as the email package writes them (compat32: encoded words for non-ASCII text,
    folded at 78 characters), without building a Header object for a short ASCII header that
    needs no folding (most of them): the same bytes, 0.4 µs a header instead of 13."""

    def fold_binary(self, name: str, value: Any) -> bytes:
        if (
            isinstance(value, str)
            and value.isascii()
            and len(name) + len(value) + 2 <= (self.max_line_length or 78)
            and "\n" not in value
            and "\r" not in value
        ):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


_HEADERS = _Headers(linesep="\n")


def _sender(name: str, address: str) -> str | Header:
    """A name in ASCII as RFC 5322 has it (quoted where it must be); any other as encoded words
    of at most 75 characters (RFC 2047), so that a long one folds like any header."""
    if name.isascii():
        return formataddr((name, address))
    sender = Header(name, "utf-8", header_name="From")
    sender.append(f"<{address}>", "us-ascii")
    return sender


def _one_line(text: Any) -> str:
    """A header holds no line break: one in a shop's name would start a header of its own."""
    return " ".join(str(text or "").split())


def _text_part(subtype: str, text: str) -> bytes:
    # quoted-printable of the UTF-8 bytes, as email.charset does it: each byte one character
    body = quoprimime.body_encode((text + "\n").encode("utf-8").decode("latin-1"))
    head = f'Content-Type: text/{subtype}; charset="utf-8"\nContent-Transfer-Encoding: quoted-printable\n\n'
    return (head + body).encode("ascii")


# --- what templates may use ---------------------------------------------------------------------


def money(amount: Any, currency: str) -> str:
    """12.5, "EUR" -> "12.50 EUR"; "3980.00", "JPY" -> "3,980 JPY"; never a float on the way."""
    try:
        value = Decimal(str(amount))
    except InvalidOperation:
        raise ValueError(f"not an amount of money: {amount!r}") from None
    return f"{amount_text(value, currency, grouped=True)} {currency}"


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
    """One line per order line, the amounts right-aligned under one another."""
    items = [f"{line['name']}  ({line['sku']})" for line in lines]
    amounts = [money(line["amount"], currency) for line in lines]
    width, amount_width = max(map(len, items), default=0), max(map(len, amounts), default=0)
    return "\n".join(
        f"  {line['quantity']:>3} x {item:<{width}}  {amount:>{amount_width}}"
        for line, item, amount in zip(lines, items, amounts, strict=True)
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
