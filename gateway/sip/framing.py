"""`StreamFramer`: splits a TCP/TLS byte stream into SIP messages.

Framing is by Content-Length, mandatory on streams (RFC 3261 §18.3, §20.14).
CRLFs between messages are skipped; each double CRLF is a keep-alive ping
that the transport answers with a single CRLF pong (RFC 5626 §3.5.1). The
framer never holds more than one message's worth of bytes beyond what it
has already handed out: a header section or body over the limit is a fatal
error before the rest arrives.
"""

from __future__ import annotations

from gateway.sip.errors import MESSAGE_TOO_LARGE, SipParseError, missing_header
from gateway.sip.fields import parse_content_length
from gateway.sip.limits import ParseLimits
from gateway.sip.message import SipMessage, _build, too_large
from gateway.sip.parser import Head, parse_head

PONG = b"\r\n"
_PING = b"\r\n\r\n"
_DEFAULT_LIMITS = ParseLimits()


def is_keepalive(datagram: bytes) -> bool:
    """A UDP datagram holding only CRLFs (a keep-alive, not a message)."""
    return bool(datagram) and not datagram.strip(b"\r\n")


def _fatal(error: SipParseError) -> SipParseError:
    error.close_connection = True
    return error


class StreamFramer:
    """Bytes in, messages out, for one connection.

    `next_message()` yields messages one at a time and raises SipParseError
    for a bad one. When the error's `close_connection` is False the bad
    message was skipped whole and the stream stays usable (answer it, go
    on); when True, framing is lost: answer if possible, then close. After a
    fatal error every call raises that error again.
    """

    def __init__(self, limits: ParseLimits = _DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._buffer = bytearray()
        self._scan_from = 0  # where to resume searching for CRLFCRLF
        self._head: Head | None = None  # parsed head awaiting its body
        self._body_start = 0
        self._body_length = 0
        self._failed: SipParseError | None = None
        self._deferred: SipParseError | None = None
        self._pings = 0

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as messages."""
        return len(self._buffer)

    @property
    def pings(self) -> int:
        """Keep-alive pings received and not yet taken."""
        return self._pings

    def take_pings(self) -> int:
        """Keep-alive pings received since the last call; send a PONG for each."""
        pings, self._pings = self._pings, 0
        return pings

    def receive(self, data: bytes) -> None:
        """Append bytes from the connection."""
        if self._failed is not None:
            raise self._failed
        self._buffer += data

    def feed(self, data: bytes) -> list[SipMessage]:
        """`receive`, then every complete message.

        Raises on the first bad message. If messages were completed before
        it in the same call, they are returned and the error is raised by
        the next `feed`/`next_message` call instead, so nothing is lost.
        """
        self.receive(data)
        messages: list[SipMessage] = []
        while True:
            try:
                msg = self.next_message()
            except SipParseError as error:
                if not messages:
                    raise
                if not error.close_connection:
                    self._deferred = error
                return messages
            if msg is None:
                return messages
            messages.append(msg)

    def next_message(self) -> SipMessage | None:
        """The next complete message, or None until more bytes arrive."""
        if self._failed is not None:
            raise self._failed
        if self._deferred is not None:
            error, self._deferred = self._deferred, None
            raise error
        try:
            return self._next()
        except SipParseError as error:
            if error.close_connection:
                self._failed = error
                self._buffer.clear()
            raise

    def _skip_keepalives(self) -> bool:
        """Drop CRLFs before a start line; False while a ping may be incomplete."""
        buffer = self._buffer
        while buffer[:1] == b"\r" or buffer[:1] == b"\n":
            if buffer.startswith(_PING):
                self._pings += 1
                del buffer[:4]
            elif len(buffer) < 4 and _PING.startswith(bytes(buffer)):
                return False  # "\r", "\r\n" or "\r\n\r": wait for the rest
            elif buffer.startswith(b"\r\n"):
                del buffer[:2]  # a lone CRLF: a pong, or stray
            else:
                raise _fatal(SipParseError(400, "Bad Line Ending", detail="bare CR or LF"))
        return True

    def _next(self) -> SipMessage | None:
        limits = self.limits
        if self._head is None:
            if not self._skip_keepalives():
                return None
            buffer = self._buffer
            end = buffer.find(_PING, self._scan_from)
            if end < 0:
                if len(buffer) > limits.max_message_bytes:
                    raise _fatal(
                        SipParseError(MESSAGE_TOO_LARGE, "Message Too Large", detail="header")
                    )
                self._scan_from = max(0, len(buffer) - 3)
                return None
            self._scan_from = 0
            if end + 4 > limits.max_message_bytes:
                raise _fatal(too_large("header section", stream=True))
            try:
                head = parse_head(bytes(buffer[:end]), limits)
                length_text = head.headers.get("Content-Length")
                if length_text is None:
                    raise missing_header("Content-Length")
                length = parse_content_length(length_text)
            except SipParseError as error:
                raise _fatal(error) from None  # without a length the next message is unknowable
            if end + 4 + length > limits.max_message_bytes:
                raise _fatal(too_large(f"{end + 4 + length} bytes", stream=True))
            self._head, self._body_start, self._body_length = head, end + 4, length
        start, length = self._body_start, self._body_length
        if len(self._buffer) < start + length:
            return None
        head = self._head
        body = bytes(self._buffer[start : start + length])
        del self._buffer[: start + length]
        self._head = None
        return _build(head, body)  # a bad message here leaves framing intact
