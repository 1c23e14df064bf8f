"""Answers the edge gave to requests it completes itself, kept for their retransmissions.

`AnswerLog` keeps any answer by request for Timer J; REFERs use it through
`refer.ReferLog`, REGISTERs over UDP with `answer_key`.

The edge answers REGISTER without a transaction layer, so a retransmission
(the 200 was lost, or came after the phone's T1) would be handled again: its
nonce-count is then a replay (RFC 7616 §3.4) and its CSeq no longer above
the binding's (RFC 3261 §10.3 step 7), and the phone would get 401 or 500
for a registration that succeeded. RFC 3261 §17.2.2 has the server
transaction absorb retransmissions and resend its last answer for Timer J;
this is that, for the one method the edge completes itself at volume.
Reliable transports do not retransmit, so only UDP answers are kept, and
only answers to REGISTERs with credentials (a retransmission without them
just gets a fresh challenge, as good as the first). Pure: `now` is passed in.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Generic, TypeVar

from gateway.sip.message import SipRequest, call_id, cseq

TIMER_J_S = 32.0
"""How long an answer is kept: Timer J, 64*T1 for UDP (RFC 3261 §17.2.2)."""
MAX_ANSWERS = 32_768
"""At most this many answers are kept (the oldest go first): ~10 s of 3,000 REGISTER/s,
which covers a phone's retransmissions at 0.5, 1.5, 3.5 and 7.5 s; an answer forgotten
earlier than Timer J only means a very late retransmission is handled afresh."""

AnswerKey = tuple[tuple[str, int], str, int]
K = TypeVar("K")
V = TypeVar("V")


def answer_key(request: SipRequest, source: tuple[str, int]) -> AnswerKey:
    """What a retransmission shares with its original: sender, Call-ID and CSeq number.

    Both header values were parsed when the message was (cached, no work here).
    """
    return (source, call_id(request), cseq(request)[0])


class AnswerLog(Generic[K, V]):
    """Recent answers by request key, each kept `keep_for` seconds, at most `max_entries`."""

    def __init__(self, keep_for: float = TIMER_J_S, max_entries: int = MAX_ANSWERS) -> None:
        self._keep_for = keep_for
        self._max = max_entries
        # Insertion order is expiry order (one `keep_for` for all): the oldest are first.
        # An OrderedDict, not a dict: a dict emptied from the front makes `next(iter())`
        # step over every freed slot until it resizes (measured: 9 % of a 401's cost).
        self._answers: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._answers)

    def answer_for(self, key: K, now: float) -> V | None:
        """The answer already sent for this request (a retransmission), or None."""
        kept = self._answers.get(key)
        return kept[1] if kept is not None and kept[0] > now else None

    def remember(self, key: K, answer: V, now: float) -> None:
        answers = self._answers
        while answers:
            oldest = next(iter(answers))
            if answers[oldest][0] > now and len(answers) < self._max:
                break
            answers.popitem(last=False)
        answers[key] = (now + self._keep_for, answer)
        answers.move_to_end(key)  # a stale entry's place would break the expiry order
