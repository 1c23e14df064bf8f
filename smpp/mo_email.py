"""The `email` MO channel: one plain-text e-mail per message (aiosmtplib adapter).

SMTP 5xx answers fail the delivery; 4xx answers, timeouts and connection
errors are retried by the worker.
"""

from __future__ import annotations

import datetime as dt
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import aiosmtplib

from gateway.config.secrets import SecretUnavailableError
from smpp.config import SmsEmailConfig, SmsNumbersConfig
from smpp.mo_delivery import Delivered, DeliveryOutcome, MoMessage, Refused, TryAgain


def mo_email(message: MoMessage, sender: str, recipient: str) -> EmailMessage:
    received = dt.datetime.fromtimestamp(message.received_at, dt.UTC)
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = recipient
    mail["Subject"] = f"SMS from {message.source}"
    mail["Date"] = format_datetime(received)
    mail["Message-ID"] = make_msgid(idstring=message.id)
    mail["X-Callgate-MO-Id"] = message.id
    text = message.text if message.text is not None else "(text in an unknown alphabet)"
    mail.set_content(
        f"From: {message.source}\nTo: {message.destination}\n"
        f"Received: {received.isoformat()}\nSMSC: {message.smsc}\n\n{text}\n"
    )
    return mail


def smtp_outcome(code: int, text: str) -> DeliveryOutcome:
    """5xx permanent, anything else temporary."""
    reason = f"SMTP {code} {text}".strip()
    return Refused(reason) if 500 <= code < 600 else TryAgain(reason)


class EmailChannel:
    """Sends through `[sms.email]`, one connection per message."""

    def __init__(self, config: SmsEmailConfig) -> None:
        self._config = config

    async def deliver(self, message: MoMessage, target: SmsNumbersConfig) -> DeliveryOutcome:
        if target.email_to is None:
            return Refused("no email_to configured")
        c = self._config
        try:
            password = c.password.reveal().get_secret_value() if c.password is not None else None
        except SecretUnavailableError as exc:
            return TryAgain(str(exc))
        try:
            await aiosmtplib.send(
                mo_email(message, c.sender, target.email_to),
                sender=c.sender,
                recipients=[target.email_to],
                hostname=c.host,
                port=c.port,
                username=c.username,
                password=password,
                use_tls=c.security == "tls",
                start_tls=c.security == "starttls",
                validate_certs=c.tls_verify,
                timeout=c.timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            refused = exc.recipients[0]
            return smtp_outcome(refused.code, refused.message)
        except aiosmtplib.SMTPResponseException as exc:
            return smtp_outcome(exc.code, exc.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return TryAgain(f"{type(exc).__name__}: {exc}")
        return Delivered()
