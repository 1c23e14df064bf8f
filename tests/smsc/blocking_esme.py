"""A tiny blocking ESME on smpplib's client, for the simulator's own tests only.

The gateway's real client lives in ``smpp/``; this one exists so the simulator
and the encoding interop tests can be checked without it.
"""

from __future__ import annotations

import time
from typing import Any

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

DEFAULT_TIMEOUT = 5.0


class BlockingEsme:
    """Connect, bind, submit, and read PDUs until an expected one arrives."""

    def __init__(self, host: str, port: int, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.client = smpplib.client.Client(
            host, port, timeout=timeout, allow_unknown_opt_params=True
        )
        self.received: list[Any] = []

    def __enter__(self) -> BlockingEsme:
        self.client.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.client.disconnect()

    def bind(
        self, kind: str = "transceiver", system_id: str = "test", password: str = "secret"
    ) -> Any:
        """Bind; raises smpplib.exceptions.PDUError (status in ``args[1]``) when refused."""
        binder = getattr(self.client, f"bind_{kind}")
        return binder(system_id=system_id, password=password)

    def submit(self, **params: Any) -> int:
        """Send a submit_sm and return its sequence number (the response is read separately)."""
        params.setdefault("source_addr", "CALLGATE")
        params.setdefault("destination_addr", "4915112345678")
        params.setdefault("short_message", b"hello")
        pdu = self.client.send_message(**params)
        return int(pdu.sequence)

    def send_raw(self, data: bytes) -> None:
        assert self.client._socket is not None
        self.client._socket.sendall(data)

    def read(self) -> Any:
        """Read one PDU, answering deliver_sm and enquire_link like a well-behaved ESME."""
        pdu = self.client.read_pdu()
        self.received.append(pdu)
        if pdu.command == "deliver_sm":
            resp = smpplib.smpp.make_pdu("deliver_sm_resp", client=self.client)
            resp.sequence = pdu.sequence
            self.client.send_pdu(resp)
        elif pdu.command in ("enquire_link", "unbind"):
            resp = smpplib.smpp.make_pdu(f"{pdu.command}_resp", client=self.client)
            resp.sequence = pdu.sequence
            self.client.send_pdu(resp)
        return pdu

    def expect(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Read until a PDU with ``command`` arrives (others are kept in ``received``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pdu = self.read()
            except TimeoutError:
                continue
            if pdu.command == command:
                return pdu
        raise TimeoutError(f"no {command} within {timeout} s")

    def collect(self, command: str, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[Any]:
        return [self.expect(command, timeout) for _ in range(count)]
