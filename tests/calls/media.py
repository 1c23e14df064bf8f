"""A caller's RTP end for interop tests: sends a PCMU tone, counts what comes back.

It is the media address the caller's SDP offers. The engine starts sending
(silence) as soon as the caller leg has media; the first packet tells this
socket where the engine's RTP port is, and from then on it sends a 1 kHz tone
there, paced at 20 ms. A packet that comes back *loud* can only be the tone
after a trip caller -> bridge -> callee -> echo -> bridge -> caller: the
bridge does not loop a port back to itself and the engine's own frames are
silence.
"""

from __future__ import annotations

import asyncio
import math
import struct
from typing import cast

_PCMU = 0
_FRAME_SAMPLES = 160  # 20 ms at 8 kHz
_LOUD = 1000  # mean |sample| of a frame that is not silence or comfort noise
_BIAS = 0x84
_CLIP = 32635


def ulaw_encode(sample: int) -> int:
    sign = 0x80 if sample < 0 else 0
    magnitude = min(abs(sample), _CLIP) + _BIAS
    exponent = 7
    for exp in range(8):
        if magnitude <= (0xFF << exp):
            exponent = exp
            break
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return ~(sign | (exponent << 4) | mantissa) & 0xFF


def ulaw_decode(byte: int) -> int:
    byte = ~byte & 0xFF
    magnitude = ((((byte & 0x0F) << 3) + _BIAS) << ((byte & 0x70) >> 4)) - _BIAS
    return -magnitude if byte & 0x80 else magnitude


_DECODE = [ulaw_decode(b) for b in range(256)]
TONE = bytes(
    ulaw_encode(int(8000 * math.sin(2 * math.pi * 1000 * n / 8000))) for n in range(_FRAME_SAMPLES)
)


def loudness(payload: bytes) -> float:
    return sum(abs(_DECODE[b]) for b in payload) / max(len(payload), 1)


class CallerMedia(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.engine: tuple[str, int] | None = None
        self.received = 0
        self.loud = 0
        self._sender: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls) -> CallerMedia:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.create_datagram_endpoint(cls, local_addr=("127.0.0.1", 0))
        protocol.transport = transport
        return protocol

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if len(data) < 12 or data[1] & 0x7F != _PCMU:
            return
        self.received += 1
        if loudness(data[12:]) > _LOUD:
            self.loud += 1
        if self.engine is None:
            self.engine = addr
            self._sender = asyncio.create_task(self._send_tone())

    async def _send_tone(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        seq = 0
        while self.transport is not None and not self.transport.is_closing():
            header = struct.pack("!BBHII", 0x80, _PCMU, seq & 0xFFFF, seq * _FRAME_SAMPLES, 0xCA11)
            self.transport.sendto(header + TONE, self.engine)
            seq += 1
            # Pacing, not waiting for an event: RTP is a 20 ms clock.
            await asyncio.sleep(max(0.0, start + seq * 0.02 - loop.time()))

    def close(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
        if self.transport is not None:
            self.transport.close()
