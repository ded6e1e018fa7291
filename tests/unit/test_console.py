"""What the CLI prints, rendered as an 80-column terminal shows it."""

from __future__ import annotations

import datetime as dt

from rich.console import Console

from docket import console as show
from docket.models.schemas import MailPage, MailState, OutboxView

AT = dt.datetime(2026, 11, 24, 9, 30, tzinfo=dt.UTC)


def mail(outbox_id: int, state: MailState, error: str | None = None) -> OutboxView:
    return OutboxView(
        outbox_id=outbox_id,
        order_id="D-001",
        delivery_no=None,
        recipient_kind="customer",
        recipient="grace@example.test",
        cc=None,
        template_key="order_received",
        state=state,
        created_at=AT,
        attempts=1 if state is MailState.sent else 3,
        sent_at=AT if state is MailState.sent else None,
        error=error,
    )


def on_80_columns(page: MailPage) -> tuple[str, str]:
    """The table's header and its body, as printed on 80 columns."""
    terminal = Console(width=80, record=True, color_system=None)
    terminal.print(show.mail_page(page))
    header, _, body = terminal.export_text().partition("┡")
    return header, body


def test_a_mail_page_shows_an_error_column_only_when_a_mail_failed() -> None:
    sent = MailPage(mails=[mail(1, MailState.sent)], page=1, page_size=50, total=1)
    header, body = on_80_columns(sent)
    assert "tries" in header and "error" not in header
    assert "2026-11-24 09:30" in body  # the time it went, whole

    failed = mail(2, MailState.failed, "550 5.1.1 no such mailbox")
    header, body = on_80_columns(
        sent.model_copy(update={"mails": [failed, mail(1, MailState.sent)], "total": 2})
    )
    assert "error" in header and "550" in body
