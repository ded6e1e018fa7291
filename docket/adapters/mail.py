"""Mail transports: SMTP (aiosmtplib) for real use, a maildir folder as the embedded default.

Addresses are checked before a mail reaches a transport (`invalid_address`). A transport sends a
batch and says, per mail, whether it was accepted, failed for now (try again
later: 4xx replies, refused connections, time-outs, no time left) or failed for good (5xx
replies, an invalid address). It never raises for a mail it could not send.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import aiosmtplib

from docket.settings import Settings, SmtpSecurity

ADDRESS = re.compile(r"^[^@\s<>(),;:\"\[\]]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*$")


@dataclass(frozen=True)
class Mail:
    """A composed mail: its bytes (lines end in LF; SMTP sends them with CRLF) and its envelope."""

    message_id: str
    sender: str
    recipients: list[str]  # To first, then Cc
    data: bytes


@dataclass(frozen=True)
class Sent:
    """What became of one mail. `error` is None when the server accepted it."""

    outbox_id: int
    error: str | None = None
    permanent: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


class MailTransport(Protocol):
    async def send(self, mails: Sequence[tuple[int, Mail]], within: float | None = None) -> list[Sent]:
        """`within`: seconds the whole batch may take (a move's own attempt, which staff wait
        for); mails it leaves unsent wait for the next attempt."""
        ...


def invalid_address(to: str, cc: str | None = None) -> str | None:
    """Why these addresses cannot be mailed to, or None."""
    for header, value in (("To", to), ("Cc", cc)):
        if value is not None and not ADDRESS.match(value):
            return f"invalid {header} address {value!r}"
    return None


class MaildirTransport:
    """Writes each mail into <folder>/new as the maildir format says (tmp first, then a rename).
    The file is named after the Message-ID, so a mail sent twice is one file. Writes are plain
    blocking writes of a few kilobytes to a local disk: not worth a thread each, and done long
    before any `within`."""

    def __init__(self, folder: Path):
        self.folder = folder
        self._ready = False
        # Each mail's two paths are joined as strings: pathlib's joins cost more than the writes.
        self._tmp, self._new = f"{folder / 'tmp'}{os.sep}", f"{folder / 'new'}{os.sep}"

    async def send(self, mails: Sequence[tuple[int, Mail]], within: float | None = None) -> list[Sent]:
        if not self._ready:
            for sub in ("tmp", "new", "cur"):
                (self.folder / sub).mkdir(parents=True, exist_ok=True)
            self._ready = True
        results = []
        for outbox_id, mail in mails:
            name = hashlib.sha256(mail.message_id.encode()).hexdigest()[:32] + ".docket"
            try:
                _deliver(self._tmp + name, self._new + name, mail.data)
            except OSError as error:
                results.append(Sent(outbox_id, f"cannot write to {self.folder}: {error}"))
                continue
            results.append(Sent(outbox_id))
        return results


def _deliver(tmp: str, new: str, data: bytes) -> None:
    """Write the mail in tmp/, then move it into new/. With the os module's calls: a buffered file
    object adds three system calls to each mail (its size, whether it is a terminal, where it
    stands), and in a worker every system call may hand the interpreter lock to another thread."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        rest = memoryview(data)
        while rest:
            rest = rest[os.write(fd, rest) :]
    finally:
        os.close(fd)
    os.replace(tmp, new)


class SmtpTransport:
    """One connection per batch; each mail is its own SMTP transaction. Every step waits at most
    `timeout` seconds; a batch sent `within` a time stops when that time is up, the mail it was
    sending then (the server may have taken it: the one mail that may arrive twice) and the rest
    left for the next attempt."""

    def __init__(
        self,
        host: str,
        port: int,
        security: SmtpSecurity = SmtpSecurity.none,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        helo: str = "localhost",
    ):
        self.host, self.port, self.security, self.helo = host, port, security, helo
        self.username, self.password, self.timeout = username, password, timeout

    async def send(self, mails: Sequence[tuple[int, Mail]], within: float | None = None) -> list[Sent]:
        if not mails:
            return []
        where = f"SMTP server {self.host}:{self.port}"
        clock = asyncio.get_running_loop().time
        deadline = None if within is None else clock() + within

        def why(error: BaseException, what: str = where) -> str:
            if deadline is not None and clock() >= deadline:
                return f"{where}: no time left of the {within:g} s a move waits for its mail"
            return f"{what}: {_reason(error)}"

        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.security is SmtpSecurity.tls,
            start_tls=True if self.security is SmtpSecurity.starttls else False,
            username=self.username,
            password=self.password,
            timeout=self.timeout,
            local_hostname=self.helo,  # the default looks up this machine's FQDN: slow without DNS
        )
        try:
            async with asyncio.timeout_at(deadline):
                await smtp.connect()
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            return [Sent(outbox_id, why(error, f"{where} unavailable")) for outbox_id, _ in mails]
        results: list[Sent] = []
        try:
            for n, (outbox_id, mail) in enumerate(mails):
                try:
                    async with asyncio.timeout_at(deadline):
                        refused, _ = await smtp.sendmail(mail.sender, mail.recipients, mail.data)
                except aiosmtplib.SMTPRecipientsRefused as error:
                    codes = [r.code for r in error.recipients]
                    text = "; ".join(f"{r.recipient}: {r.code} {r.message}" for r in error.recipients)
                    results.append(Sent(outbox_id, f"{where} refused {text}", permanent=min(codes) >= 500))
                    continue
                except aiosmtplib.SMTPResponseException as error:
                    if isinstance(error, aiosmtplib.SMTPServerDisconnected):
                        raise
                    permanent = error.code >= 500
                    results.append(Sent(outbox_id, f"{where}: {error.code} {error.message}", permanent))
                    continue
                except (aiosmtplib.SMTPServerDisconnected, TimeoutError, OSError) as error:
                    # The connection is gone, or the time: this mail and the rest wait for the
                    # next attempt.
                    results.extend(Sent(later, why(error)) for later, _ in mails[n:])
                    break
                to = mail.recipients[0]
                if to in refused:  # only a copy's address was accepted
                    response = refused[to]
                    results.append(
                        Sent(outbox_id, f"{where} refused {to}: {response.code} {response.message}", True)
                    )
                else:
                    results.append(Sent(outbox_id))
        finally:
            try:
                async with asyncio.timeout_at(deadline):
                    await smtp.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                smtp.close()
        return results


def _reason(error: BaseException) -> str:
    return str(error) or type(error).__name__


def transport_from(settings: Settings) -> MailTransport:
    if settings.mail_transport == "smtp":
        return SmtpTransport(
            settings.smtp_host,
            settings.smtp_port,
            settings.smtp_security,
            settings.smtp_username,
            settings.smtp_password,
            settings.smtp_timeout,
            helo=settings.mail_from.rsplit("@", 1)[-1],
        )
    return MaildirTransport(settings.mail_folder)
