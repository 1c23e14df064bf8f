"""Whether an SDP offer puts a call on hold: pure, from the offer's text.

RFC 3264 section 8.4: an offer that marks the audio stream `sendonly` or
`inactive` holds the call; RFC 2543 peers still send `c=... 0.0.0.0`. A
media-level direction overrides the session-level one. Only the first
audio stream counts: the engine bridges audio and nothing else.
"""

from __future__ import annotations

_HOLD_DIRECTIONS = frozenset({"sendonly", "inactive"})
_DIRECTIONS = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})
_NULL_ADDRESSES = frozenset({"0.0.0.0", "::"})  # noqa: S104 - compared, never bound


def hold_requested(sdp: str) -> bool:
    """True when `sdp` (an offer) asks us to stop sending audio to its sender's peer."""
    session_direction = "sendrecv"
    session_null = False
    media_direction: str | None = None
    media_null: bool | None = None
    in_media = in_audio = seen_audio = False
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            if seen_audio:
                break  # past the first audio stream
            in_media = True
            in_audio = seen_audio = line[2:].split(" ", 1)[0].lower() == "audio"
            continue
        if in_media and not in_audio:
            continue  # another stream's lines
        if line.startswith("c="):
            null = line.rsplit(" ", 1)[-1].split("/", 1)[0] in _NULL_ADDRESSES
            if in_audio:
                media_null = null
            else:
                session_null = null
            continue
        attribute = line[2:].lower() if line.startswith("a=") else ""
        if attribute in _DIRECTIONS:
            if in_audio:
                media_direction = attribute
            else:
                session_direction = attribute
    if not seen_audio:
        return False
    direction = media_direction or session_direction
    null = session_null if media_null is None else media_null
    return direction in _HOLD_DIRECTIONS or null
