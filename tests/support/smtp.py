"""A real SMTP server on the loopback for tests (aiosmtpd in a thread): it keeps every message
it receives so a test can read the headers, the body and the PDF attachments."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Iterator

from aiosmtpd.controller import Controller

from tests.support.platform import free_port


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    def text(self) -> str:
        part = self.message.get_body(preferencelist=("plain",))
        return part.get_content() if part else ""

    def pdfs(self) -> list[tuple[str, bytes]]:
        return [(part.get_filename(), part.get_payload(decode=True)) for part in self.message.iter_attachments()
                if part.get_content_type() == "application/pdf"]


@dataclass
class _Inbox:
    messages: list[ReceivedMail] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope) -> str:
        mail = ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos),
                            message_from_bytes(envelope.original_content or envelope.content, policy=policy.default))
        with self.lock:
            self.messages.append(mail)
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    host: str
    port: int
    inbox: _Inbox

    @property
    def messages(self) -> list[ReceivedMail]:
        with self.inbox.lock:
            return list(self.inbox.messages)

    def to(self, recipient: str) -> list[ReceivedMail]:
        return [m for m in self.messages if recipient in m.rcpt_tos]


@contextmanager
def smtp_server() -> Iterator[SmtpServer]:
    inbox = _Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, inbox)
    finally:
        controller.stop()
