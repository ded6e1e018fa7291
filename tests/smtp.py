"""A real SMTP server for the tests (aiosmtpd), keeping what it accepts; it can refuse recipients,
be slow, and be stopped and started again on the same port."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import Counter
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    """The aiosmtpd handler: every accepted mail, parsed."""

    def __init__(self) -> None:
        self.mails: list[EmailMessage] = []
        self.refuse: dict[str, str] = {}  # address -> reply, e.g. "550 5.1.1 no such mailbox"
        self.delay = 0.0  # seconds per mail, to catch delivery in the middle
        self.recipient_delay = 0.0  # seconds per recipient, before the server has taken anything
        self._lock = threading.Lock()

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        if self.recipient_delay:
            await asyncio.sleep(self.recipient_delay)
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        mail = message_from_bytes(envelope.content, policy=policy.default)
        with self._lock:
            self.mails.append(mail)  # type: ignore[arg-type]
        return "250 Message accepted"

    def snapshot(self) -> list[EmailMessage]:
        with self._lock:
            return list(self.mails)

    def seen(self) -> set[tuple[str, str, str]]:
        """(to, template, order) of every mail accepted."""
        return {
            (str(m["To"]), str(m["X-Docket-Template"]), str(m["X-Docket-Order"])) for m in self.snapshot()
        }

    def copies(self) -> Counter[str]:
        """How often each Message-ID arrived."""
        return Counter(str(m["Message-ID"]) for m in self.snapshot())


class SmtpServer:
    def __init__(self) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self._controller: Controller | None = None
        self._started = False

    def start(self) -> None:
        """Listen on `port`. Another process may bind a port between its being found free and
        being bound here: a first start then takes another free port; a restart (the server back
        after an outage) tries its own port again a moment later."""
        for attempt in range(3):
            controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
            try:
                controller.start()
            except OSError:
                if attempt == 2:
                    raise
                if self._started:
                    time.sleep(1)
                else:
                    self.port = free_port()
                continue
            self._controller, self._started = controller, True
            return

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None
