"""The e-mail MO channel and the delivery worker against a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session

from gateway.store.database import Store
from smpp.mo_email import EmailChannel
from tests.smpp.mo_support import FAST_RETRIES, add_mo, delivery, running_worker
from tests.smpp.sms_support import open_store, sms_config
from tests.support.ports import free_tcp_port

ALICE = "+4930123456"


class Mailbox:
    """An aiosmtpd handler: answers RCPT from a script (default 250), keeps what it receives."""

    def __init__(self) -> None:
        self.rcpt_answers: list[str] = []
        self.messages: list[tuple[Envelope, EmailMessage]] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        answer = self.rcpt_answers.pop(0) if self.rcpt_answers else "250 OK"
        if answer.startswith("250"):
            envelope.rcpt_tos.append(address)
        return answer

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert isinstance(envelope.content, bytes)
        mail = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        self.messages.append((envelope, mail))
        return "250 Message accepted"


@pytest.fixture
async def smtp() -> AsyncIterator[tuple[Mailbox, int]]:
    mailbox = Mailbox()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(mailbox, hostname="mx.test"), "127.0.0.1", 0
    )
    yield mailbox, server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store(tmp_path)
    yield opened
    await opened.close()


async def run(store: Store, port: int) -> tuple[list[str], dict[str, Any]]:
    config = sms_config(
        numbers=[
            {
                "account": "alice",
                "numbers": [ALICE],
                "channels": ["store", "email"],
                "email_to": "alice@example.test",
            }
        ],
        mo_delivery=FAST_RETRIES,
        email={"host": "127.0.0.1", "port": port, "security": "none", "sender": "sms@gw.test"},
    )
    async with running_worker(store, config, {"email": EmailChannel(config.email)}) as res:
        await add_mo(store, "mo1", ALICE, "alice", ("store", "email"))
        results = [(await res.next())[1]]
        while results[-1] == "retry":
            results.append((await res.next())[1])
    return results, dict(await delivery(store, "mo1", "email"))


async def test_mo_arrives_as_plain_text_mail(store: Store, smtp: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp
    results, row = await run(store, port)
    assert results == ["delivered"]
    assert (row["state"], row["attempts"]) == ("delivered", 1)
    ((envelope, mail),) = mailbox.messages
    assert (envelope.mail_from, envelope.rcpt_tos) == ("sms@gw.test", ["alice@example.test"])
    assert mail["Subject"] == "SMS from +4915112345678"
    assert mail["To"] == "alice@example.test"
    assert mail.get_content_type() == "text/plain"
    body = mail.get_content()
    assert "hello mo1 ✓" in body and f"To: {ALICE}" in body


async def test_smtp_4xx_is_retried(store: Store, smtp: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp
    mailbox.rcpt_answers = ["451 4.3.0 try again later"]
    results, row = await run(store, port)
    assert results == ["retry", "delivered"]
    assert (row["state"], row["attempts"]) == ("delivered", 2)
    assert len(mailbox.messages) == 1


async def test_smtp_5xx_fails(store: Store, smtp: tuple[Mailbox, int]) -> None:
    mailbox, port = smtp
    mailbox.rcpt_answers = ["550 5.1.1 no such user"]
    results, row = await run(store, port)
    assert results == ["failed"]
    assert row["state"] == "failed" and row["last_error"].startswith("SMTP 550")
    assert mailbox.messages == []


async def test_no_server_is_retried(store: Store) -> None:
    config = sms_config(
        numbers=[
            {
                "account": "alice",
                "numbers": [ALICE],
                "channels": ["email"],
                "email_to": "alice@example.test",
            }
        ],
        mo_delivery=FAST_RETRIES,
        email={"host": "127.0.0.1", "port": free_tcp_port(), "security": "none"},
    )
    async with running_worker(store, config, {"email": EmailChannel(config.email)}) as res:
        await add_mo(store, "mo1", ALICE, "alice", ("email",))
        assert await res.take(5) == ["retry"] * 4 + ["failed"]
    row = await delivery(store, "mo1", "email")
    assert row["attempts"] == 5 and row["last_error"]
