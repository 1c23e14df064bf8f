"""The durable SMS queue's pure core: states, retries, pacing, receipts. No I/O.

`SmsQueue` holds the messages that are not final yet and decides, given
`now` (wall-clock epoch seconds: a queue outlives processes, so a monotonic
clock would not do) and the free capacity of each SMSC, what to send next. It
records every change it makes in an outbox (`take_changes()`) that the
adapter writes to the store in batches; it never reads a clock or touches the
database.

Delivery contract: at least once to the SMSC, with de-duplication. A segment
the SMSC accepted (submit_sm_resp ESME_ROK) is never offered again; a segment
whose outcome is unknown (no answer before a timeout or a lost connection) is
offered again and may reach the SMSC twice. Receipts are idempotent, and a
receipt that arrives before its submit_sm_resp was processed is kept as an
orphan and matched when the answer comes.
"""

from __future__ import annotations

import heapq
import re
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Final, Literal

from smpp.config import SmsRetryConfig
from smpp.pdu import CommandStatus, ParamValue

# ---------------------------------------------------------------------- states


class MessageState(StrEnum):
    ACCEPTED = "accepted"
    QUEUED = "queued"
    SUBMITTING = "submitting"
    SUBMITTED = "submitted"
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    EXPIRED = "expired"
    REJECTED = "rejected"
    FAILED = "failed"


class Trigger(Enum):
    QUEUE = "queue"
    """Stored durably; waits for its time."""
    REJECT = "reject"
    """Refused by the content filter (kept for the account's records)."""
    DISPATCH = "dispatch"
    """Its pending segments were handed to an SMSC."""
    ALL_ACCEPTED = "all_accepted"
    """The SMSC accepted every segment."""
    RETRY = "retry"
    """A temporary error or an unknown outcome: offer the pending segments again."""
    FAIL = "fail"
    """A permanent error, or attempts exhausted."""
    EXPIRE = "expire"
    """Validity ran out before the SMSC took it."""
    DELIVERED = "delivered"
    UNDELIVERABLE = "undeliverable"
    DLR_EXPIRED = "dlr_expired"
    DLR_REJECTED = "dlr_rejected"


M = MessageState
TRANSITIONS: Final[Mapping[tuple[MessageState, Trigger], MessageState]] = {
    (M.ACCEPTED, Trigger.QUEUE): M.QUEUED,
    (M.ACCEPTED, Trigger.REJECT): M.REJECTED,
    (M.QUEUED, Trigger.DISPATCH): M.SUBMITTING,
    (M.QUEUED, Trigger.EXPIRE): M.EXPIRED,
    (M.QUEUED, Trigger.RETRY): M.QUEUED,  # a second segment failing in the same round
    # Late answers to segments still in flight when the message was re-queued:
    (M.QUEUED, Trigger.ALL_ACCEPTED): M.SUBMITTED,
    (M.QUEUED, Trigger.FAIL): M.FAILED,
    (M.SUBMITTING, Trigger.ALL_ACCEPTED): M.SUBMITTED,
    (M.SUBMITTING, Trigger.RETRY): M.QUEUED,
    (M.SUBMITTING, Trigger.FAIL): M.FAILED,
    (M.SUBMITTING, Trigger.EXPIRE): M.EXPIRED,
    (M.SUBMITTED, Trigger.DELIVERED): M.DELIVERED,
    (M.SUBMITTED, Trigger.UNDELIVERABLE): M.UNDELIVERABLE,
    (M.SUBMITTED, Trigger.DLR_EXPIRED): M.EXPIRED,
    (M.SUBMITTED, Trigger.DLR_REJECTED): M.REJECTED,
}
"""Every legal state change of a message; anything else raises `QueueStateError`."""

FINAL_STATES: Final = frozenset({M.DELIVERED, M.UNDELIVERABLE, M.EXPIRED, M.REJECTED, M.FAILED})
PENDING_STATES: Final = frozenset({M.ACCEPTED, M.QUEUED, M.SUBMITTING, M.SUBMITTED})


class QueueStateError(RuntimeError):
    """A transition the table does not allow (a bug)."""


def transition(state: MessageState, trigger: Trigger) -> MessageState:
    target = TRANSITIONS.get((state, trigger))
    if target is None:
        raise QueueStateError(f"{trigger.value} not allowed in {state.value}")
    return target


class SegmentStatus(StrEnum):
    PENDING = "pending"
    IN_FLIGHT = "in_flight"
    ACCEPTED = "accepted"
    FAILED = "failed"


# ---------------------------------------------------------------------- submit errors

ErrorClass = Literal["ok", "temporary", "permanent"]

TEMPORARY_STATUSES: Final = frozenset(
    {
        CommandStatus.ESME_RSYSERR,  # also what a generic_nack usually carries
        CommandStatus.ESME_RMSGQFUL,
        CommandStatus.ESME_RTHROTTLED,
        CommandStatus.ESME_RX_T_APPN,
        CommandStatus.ESME_RINVBNDSTS,  # not bound (any more): another session will do
        0x45,  # ESME_RSUBMITFAIL: the SMSC could not take it now
        CommandStatus.ESME_RUNKNOWNERR,
    }
)
"""command_status values that mean "not now": retried with backoff."""
PERMANENT_STATUSES: Final = frozenset(
    {
        CommandStatus.ESME_RINVMSGLEN,
        0x0A,  # ESME_RINVSRCADR
        0x0B,  # ESME_RINVDSTADR
        0x0C,  # ESME_RINVMSGID
        0x33,  # ESME_RINVNUMDESTS
        0x43,  # ESME_RINVESMCLASS
        0x48,  # ESME_RINVSRCTON
        0x49,  # ESME_RINVSRCNPI
        0x50,  # ESME_RINVDSTTON
        0x51,  # ESME_RINVDSTNPI
        0x61,  # ESME_RINVSCHED
        0x62,  # ESME_RINVEXPIRY
        0x65,  # ESME_RX_P_APPN
        0x66,  # ESME_RX_R_APPN
        0x104,  # ESME_RINVDCS (SMPP 5.0, common in 3.4 SMSCs)
        CommandStatus.ESME_RINVPARLEN,
        CommandStatus.ESME_RINVOPTPARSTREAM,
    }
)
"""command_status values that will never succeed for this message: failed at once."""


def classify_status(status: int, policy: SmsRetryConfig) -> ErrorClass:
    """What a submit_sm_resp (or generic_nack) command_status means for the message."""
    if status == CommandStatus.ESME_ROK:
        return "ok"
    if status in policy.permanent_statuses:
        return "permanent"
    if status in policy.temporary_statuses or status in TEMPORARY_STATUSES:
        return "temporary"
    if status in PERMANENT_STATUSES:
        return "permanent"
    return "temporary" if policy.unknown_is_temporary else "permanent"


def retry_delay(policy: SmsRetryConfig, attempts: int) -> float:
    """Wait before attempt `attempts + 1`: initial * multiplier**(attempts-1), capped."""
    exponent = max(0, attempts - 1)
    return float(min(policy.max_backoff, policy.initial_backoff * policy.multiplier**exponent))


# ---------------------------------------------------------------------- receipts

RECEIPT_OUTCOMES: Final[Mapping[str, Trigger | None]] = {
    # SMPP 3.4 Appendix B / §5.2.28: every state but ENROUTE is final.
    "DELIVRD": Trigger.DELIVERED,
    # "Accepted": read on behalf of the subscriber (customer service): final, and
    # as far as the sender is concerned, delivered.
    "ACCEPTD": Trigger.DELIVERED,
    "EXPIRED": Trigger.DLR_EXPIRED,
    "DELETED": Trigger.UNDELIVERABLE,  # deleted at the SMSC before delivery
    "UNDELIV": Trigger.UNDELIVERABLE,
    "UNKNOWN": Trigger.UNDELIVERABLE,  # "in invalid state": final, not delivered
    "REJECTD": Trigger.DLR_REJECTED,
    "ENROUTE": None,  # intermediate: still on its way
}
"""Receipt stat -> what it does to the message (None: nothing yet)."""
MESSAGE_STATE_STATS: Final[Mapping[int, str]] = {
    1: "ENROUTE",
    2: "DELIVRD",
    3: "EXPIRED",
    4: "DELETED",
    5: "UNDELIV",
    6: "ACCEPTD",
    7: "UNKNOWN",
    8: "REJECTD",
}
"""The message_state TLV (SMPP 3.4 §5.3.2.35) as the receipt text's stat."""
STAT_ALIASES: Final[Mapping[str, str]] = {
    "DELIVERED": "DELIVRD",
    "UNDELIVERABLE": "UNDELIV",
    "ACCEPTED": "ACCEPTD",
    "REJECTED": "REJECTD",
}
_FINAL_ORDER: Final = ("REJECTD", "UNDELIV", "DELETED", "UNKNOWN", "EXPIRED")

_RECEIPT_FIELD: Final = re.compile(
    r"(?i)(?:^|\s)(id|sub|dlvrd|submit date|done date|stat|err):\s*(\S*)"
)
_RECEIPT_TEXT: Final = re.compile(r"(?i)(?:^|\s)text:")
_USUAL_RECEIPT_KEYS: Final = (
    *("id", "sub", "dlvrd", "submit date", "done date", "stat", "err"),
    "text",
)
_USUAL_RECEIPT: Final = re.compile(
    r"(?is)id:(\S+) sub:(\S+) dlvrd:(\S+) submit date:(\S+) done date:(\S+)"
    r" stat:(\S+) err:(\S+)(?: text:(.*))?"
)


@dataclass(frozen=True, slots=True)
class DeliveryReceipt:
    """What a receipt says; TLVs win over the text where both are present."""

    message_id: str | None
    stat: str | None
    error: str | None = None
    message_state: int | None = None
    submitted: str | None = None
    done: str | None = None
    text: str = ""
    raw: str = ""

    @property
    def outcome(self) -> Trigger | None:
        return RECEIPT_OUTCOMES.get(self.stat or "")

    @property
    def is_final(self) -> bool:
        return self.stat in RECEIPT_OUTCOMES and self.outcome is not None


def _failure_rank(stat: str | None) -> int:
    return _FINAL_ORDER.index(stat) if stat in _FINAL_ORDER else len(_FINAL_ORDER)


def parse_receipt_text(text: str) -> dict[str, str]:
    """The `key:value` fields of a receipt text, lower-case keys; tolerant of
    missing, reordered and extra fields. Everything after `text:` is the text."""
    usual = _USUAL_RECEIPT.fullmatch(text)
    if usual is not None:  # one regex pass for the layout nearly every SMSC sends
        fields = dict(zip(_USUAL_RECEIPT_KEYS, usual.groups(), strict=True))
        if fields["text"] is None:
            del fields["text"]
        return fields
    return tolerant_receipt_fields(text)


def tolerant_receipt_fields(text: str) -> dict[str, str]:
    """`parse_receipt_text` for any layout (field by field)."""
    found = _RECEIPT_TEXT.search(text)
    head, tail = (text[: found.start()], text[found.end() :]) if found else (text, None)
    fields = {key.lower(): value for key, value in _RECEIPT_FIELD.findall(head)}
    if tail is not None:
        fields["text"] = tail
    return fields


def _normal_stat(stat: str | None) -> str | None:
    if not stat:
        return None
    upper = stat.upper()
    return STAT_ALIASES.get(upper, upper)


def parse_receipt(params: Mapping[str, ParamValue]) -> DeliveryReceipt:
    """A receipt from a deliver_sm's fields: receipted_message_id and message_state
    TLVs preferred, the text's `id:` and `stat:` otherwise."""
    body = params.get("short_message") or params.get("message_payload") or b""
    raw = body.decode("latin-1") if isinstance(body, bytes) else str(body)
    fields = parse_receipt_text(raw)
    tlv_id = params.get("receipted_message_id")
    message_id: str | None
    if isinstance(tlv_id, bytes) and tlv_id.strip(b"\0"):
        message_id = tlv_id.strip(b"\0").decode("latin-1")
    elif isinstance(tlv_id, str) and tlv_id:
        message_id = tlv_id
    else:
        message_id = fields.get("id") or None
    state = params.get("message_state")
    message_state = state if isinstance(state, int) else None
    stat = MESSAGE_STATE_STATS.get(message_state or 0) or _normal_stat(fields.get("stat"))
    error = fields.get("err")
    network_error = params.get("network_error_code")
    if isinstance(network_error, bytes) and len(network_error) == 3 and not error:
        error = str(int.from_bytes(network_error[1:], "big"))
    return DeliveryReceipt(
        message_id=message_id,
        stat=stat,
        error=error,
        message_state=message_state,
        submitted=fields.get("submit date"),
        done=fields.get("done date"),
        text=fields.get("text", ""),
        raw=raw,
    )


# ---------------------------------------------------------------------- message ids

_HEX: Final = re.compile(r"^(?:0[xX])?([0-9a-fA-F]+)$")
MAX_ID_DIGITS: Final = 64


def canonical_ids(message_id: str) -> tuple[str | None, str | None]:
    """(decimal, hex): the decimal text of the id read as a decimal number and as
    a hex number, None where it is not one.

    SMSCs spell the same id differently in submit_sm_resp and in the receipt
    (hex vs decimal, leading zeros, case). An id like "1000000" is valid in
    both bases, so both readings are kept; matching decides which pairing fits
    (see `ReceiptIndex`).
    """
    text = message_id.strip()
    if not text or len(text) > MAX_ID_DIGITS:
        return None, None
    # ASCII digits without leading zeros are their own decimal text (no int()).
    decimal = (text.lstrip("0") or "0") if text.isascii() and text.isdigit() else None
    found = _HEX.match(text)
    hexadecimal = str(int(found.group(1), 16)) if found else None
    return decimal, hexadecimal


SegmentKey = tuple[str, int]
"""(message id, segment number from 1)."""
_IndexKey = tuple[str, str, str]  # (smsc, kind: x exact | d decimal | h hex, value)


def _id_keys(smsc: str, message_id: str) -> list[_IndexKey]:
    decimal, hexadecimal = canonical_ids(message_id)
    keys: list[_IndexKey] = [(smsc, "x", message_id)]
    if decimal is not None:
        keys.append((smsc, "d", decimal))
    if hexadecimal is not None:
        keys.append((smsc, "h", hexadecimal))
    return keys


def _numeric_tiers(smsc: str, message_id: str) -> list[list[_IndexKey]]:
    """Keys to try for an id seen elsewhere after the exact string, in tiers: the
    same number in the same base (leading zeros, case, 0x); the same number
    across bases (one side hex, the other decimal)."""
    decimal, hexadecimal = canonical_ids(message_id)
    same: list[_IndexKey] = []
    cross: list[_IndexKey] = []
    if decimal is not None:
        same.append((smsc, "d", decimal))
        cross.append((smsc, "h", decimal))
    if hexadecimal is not None:
        same.append((smsc, "h", hexadecimal))
        cross.append((smsc, "d", hexadecimal))
    return [same, cross]


class ReceiptIndex:
    """Maps (SMSC, message id as spelled anywhere) to the value stored under it.

    Lookup tries the exact string, then tier by tier (`_numeric_tiers`), and
    stops at the first tier with exactly one candidate; several candidates in
    one tier are ambiguous and match nothing (the receipt is kept unmatched
    and logged, never applied to a guess).
    """

    def __init__(self) -> None:
        self._keys: dict[_IndexKey, SegmentKey | set[SegmentKey]] = {}
        """A key's one value, or the set of several (never fewer than two): nearly
        every key has one, and a set per key would cost three per segment."""
        self._by_value: dict[SegmentKey, list[_IndexKey]] = {}

    def __len__(self) -> int:
        return len(self._by_value)

    def __contains__(self, value: SegmentKey) -> bool:
        return value in self._by_value

    def add(self, smsc: str, message_id: str, value: SegmentKey) -> None:
        keys = _id_keys(smsc, message_id)
        self._by_value[value] = keys
        index = self._keys
        for key in keys:
            held = index.get(key)
            if held is None:
                index[key] = value
            elif isinstance(held, set):
                held.add(value)
            elif held != value:
                index[key] = {held, value}

    def remove(self, value: SegmentKey) -> None:
        index = self._keys
        for key in self._by_value.pop(value, ()):
            held = index.get(key)
            if isinstance(held, set):
                held.discard(value)
                if len(held) == 1:
                    index[key] = held.pop()
            elif held == value:
                del index[key]

    def find(self, smsc: str, message_id: str) -> SegmentKey | None:
        index = self._keys
        if not index:
            return None
        exact = index.get((smsc, "x", message_id))
        if exact is not None:  # the first tier, without reading the id as numbers
            return None if isinstance(exact, set) else exact
        for tier in _numeric_tiers(smsc, message_id):
            found: set[SegmentKey] = set()
            for key in tier:
                held = index.get(key)
                if isinstance(held, set):
                    found |= held
                elif held is not None:
                    found.add(held)
            if len(found) == 1:
                return found.pop()
            if found:
                return None
        return None


# ---------------------------------------------------------------------- pacing


@dataclass(slots=True)
class TokenBucket:
    """`rate` per second, up to `burst` back to back."""

    rate: float
    burst: float
    tokens: float = -1.0
    updated: float | None = None

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.burst

    def take(self, now: float, amount: float = 1.0) -> float | None:
        """Take `amount` tokens: None if taken, else the time they will be there."""
        if self.updated is not None and now > self.updated:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        if self.updated is None or now > self.updated:
            self.updated = now
        if self.tokens >= amount:
            self.tokens -= amount
            return None
        return now + (amount - self.tokens) / self.rate


# ---------------------------------------------------------------------- the queue


@dataclass(slots=True)
class Segment:
    seq: int
    status: SegmentStatus = SegmentStatus.PENDING
    smsc: str | None = None
    smsc_message_id: str | None = None
    dlr_state: str | None = None


@dataclass(slots=True)
class QueuedMessage:
    """A message the queue is responsible for (not final yet)."""

    id: str
    account: str
    routes: tuple[str, ...]
    """SMSC names in priority order."""
    expires_at: float
    segments: list[Segment]
    state: MessageState = MessageState.QUEUED
    due: float = 0.0
    attempts: int = 0
    smsc: str | None = None
    round_charged: bool = False
    """An attempt was counted for the current round (throttling gives it back)."""


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Send these segments of `message_id` to `smsc` now."""

    message_id: str
    smsc: str
    seqs: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ReceiptMatch:
    """A receipt applied to a segment; `duplicate` if it changed nothing."""

    segment: SegmentKey
    duplicate: bool


Values = dict[str, object]


@dataclass(slots=True)
class Changes:
    """What changed since the last `take_changes()`, merged per row."""

    messages: dict[str, Values] = field(default_factory=dict)
    segments: dict[SegmentKey, Values] = field(default_factory=dict)
    receipts: dict[str, SegmentKey] = field(default_factory=dict)
    """Receipt event id -> the segment it was finally matched to."""
    finished: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.messages or self.segments or self.receipts or self.finished)


@dataclass(slots=True)
class _Orphan:
    event_id: str
    smsc: str
    receipt: DeliveryReceipt
    received_at: float


class SmsQueue:
    """Messages not final yet, their timers and receipts; see the module docstring."""

    def __init__(
        self,
        retry: SmsRetryConfig,
        pacing: Mapping[str, TokenBucket] | None = None,
        *,
        scan_limit: int = 10_000,
        recent_segments: int = 100_000,
        orphan_ttl: float = 3600.0,
        orphan_max: int = 100_000,
    ) -> None:
        self.retry = retry
        self._pacing = dict(pacing or {})
        self._scan_limit = scan_limit
        self._messages: dict[str, QueuedMessage] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._counter = 0
        self._ready: deque[QueuedMessage] = deque()
        self._pacing_wake: float | None = None
        self._index = ReceiptIndex()
        self._recent: OrderedDict[SegmentKey, None] = OrderedDict()
        self._recent_max = recent_segments
        self._orphans: OrderedDict[str, _Orphan] = OrderedDict()
        self._orphan_index = ReceiptIndex()  # values: (event id, 0)
        self._orphan_ttl = orphan_ttl
        self._orphan_max = orphan_max
        self._changes = Changes()
        self.in_flight = 0
        """Segments handed out and not answered yet."""

    # -------------------------------------------------------------- observation

    def __len__(self) -> int:
        return len(self._messages)

    def get(self, message_id: str) -> QueuedMessage | None:
        return self._messages.get(message_id)

    @property
    def orphan_count(self) -> int:
        return len(self._orphans)

    def take_changes(self) -> Changes:
        changes, self._changes = self._changes, Changes()
        return changes

    def idle(self, now: float) -> bool:
        """Nothing due now and nothing in flight (scheduled and backed-off messages
        may still wait; submitted ones may still wait for receipts)."""
        if self.in_flight or self._ready:
            return False
        return not any(due <= now and self._live(due, mid) for due, _, mid in self._heap)

    def next_wake(self, now: float) -> float | None:
        """When `take_due` may have something new without any other event: the next
        scheduled/backed-off message, or the end of an account's pacing pause."""
        heap = self._heap
        while heap and not self._live(heap[0][0], heap[0][2]):
            heapq.heappop(heap)
        wake = heap[0][0] if heap else None
        if self._ready and self._pacing_wake is not None:
            wake = self._pacing_wake if wake is None else min(wake, self._pacing_wake)
        return wake

    def _live(self, due: float, message_id: str) -> bool:
        message = self._messages.get(message_id)
        return message is not None and message.state is M.QUEUED and message.due == due

    # -------------------------------------------------------------- adding

    def add(self, message: QueuedMessage, due: float) -> None:
        """Take over a stored message (new, or recovered at start)."""
        self._messages[message.id] = message
        if message.state is M.QUEUED:
            self._schedule(message, due)
        for segment in message.segments:
            if segment.status is SegmentStatus.ACCEPTED and segment.smsc_message_id:
                assert segment.smsc is not None
                self._index.add(segment.smsc, segment.smsc_message_id, (message.id, segment.seq))

    def _schedule(self, message: QueuedMessage, due: float) -> None:
        message.due = due
        self._counter += 1
        heapq.heappush(self._heap, (due, self._counter, message.id))

    # -------------------------------------------------------------- dispatching

    def take_due(self, now: float, capacity: dict[str, int]) -> list[Dispatch]:
        """Messages to send now, at most `capacity[smsc]` segments each (decremented;
        a message with more segments than the rest of the capacity still goes)."""
        heap = self._heap
        ready = self._ready
        while heap and heap[0][0] <= now:
            due, _, message_id = heapq.heappop(heap)
            if not self._live(due, message_id):
                continue
            message = self._messages[message_id]
            if now >= message.expires_at:
                self._expire(message, now)
                continue
            ready.append(message)
        dispatches: list[Dispatch] = []
        if not ready or not any(free > 0 for free in capacity.values()):
            return dispatches
        self._pacing_wake = None
        kept: list[QueuedMessage] = []
        scanned = 0
        while ready and scanned < self._scan_limit:
            message = ready.popleft()
            scanned += 1
            if message.state is not M.QUEUED:
                continue
            if now >= message.expires_at:
                self._expire(message, now)
                continue
            smsc = next((name for name in message.routes if capacity.get(name, 0) > 0), None)
            if smsc is None:
                kept.append(message)
                continue
            bucket = self._pacing.get(message.account)
            if bucket is not None:
                wait = bucket.take(now)
                if wait is not None:
                    kept.append(message)
                    if self._pacing_wake is None or wait < self._pacing_wake:
                        self._pacing_wake = wait
                    continue
            dispatches.append(self._dispatch(message, smsc, now))
            capacity[smsc] -= len(dispatches[-1].seqs)
            if capacity[smsc] <= 0 and not any(free > 0 for free in capacity.values()):
                break  # only this SMSC's capacity changed: look at the others only then
        ready.extendleft(reversed(kept))
        return dispatches

    def _dispatch(self, message: QueuedMessage, smsc: str, now: float) -> Dispatch:
        self._move(message, Trigger.DISPATCH, now)
        message.attempts += 1
        message.round_charged = True
        message.smsc = smsc
        seqs: list[int] = []
        for segment in message.segments:
            if segment.status is SegmentStatus.PENDING:
                segment.status = SegmentStatus.IN_FLIGHT
                segment.smsc = smsc
                seqs.append(segment.seq)
                self._segment_change(
                    message.id,
                    segment.seq,
                    submit_status=SegmentStatus.IN_FLIGHT.value,
                    smsc=smsc,
                )
        self.in_flight += len(seqs)
        self._message_change(message, now, attempts=message.attempts, smsc=smsc)
        return Dispatch(message.id, smsc, tuple(seqs))

    # -------------------------------------------------------------- answers

    def _in_flight_segment(self, key: SegmentKey) -> tuple[QueuedMessage, Segment] | None:
        message = self._messages.get(key[0])
        if message is None:
            return None
        segment = message.segments[key[1] - 1]
        if segment.status is not SegmentStatus.IN_FLIGHT:
            return None
        self.in_flight -= 1
        return message, segment

    def submit_accepted(
        self, key: SegmentKey, smsc: str, smsc_message_id: str | None, now: float
    ) -> None:
        found = self._in_flight_segment(key)
        if found is None:
            return
        message, segment = found
        segment.status = SegmentStatus.ACCEPTED
        segment.smsc = smsc
        segment.smsc_message_id = smsc_message_id
        self._segment_change(
            message.id,
            segment.seq,
            submit_status=SegmentStatus.ACCEPTED.value,
            smsc=smsc,
            smsc_message_id=smsc_message_id,
            command_status=0,
            submitted_at=now,
        )
        if smsc_message_id:
            self._index.add(smsc, smsc_message_id, key)
        if message.state in (M.QUEUED, M.SUBMITTING) and (
            len(message.segments) == 1
            or all(s.status is SegmentStatus.ACCEPTED for s in message.segments)
        ):
            self._move(message, Trigger.ALL_ACCEPTED, now)
            self._message_change(message, now, submitted_at=now, next_attempt_at=None)
        if smsc_message_id:
            self._match_orphans(smsc, smsc_message_id, key, now)
        if message.state is M.SUBMITTED:
            self._settle(message, now)

    def submit_failed(self, key: SegmentKey, status: int, now: float, reason: str = "") -> None:
        """A submit_sm_resp or generic_nack with an error status."""
        found = self._in_flight_segment(key)
        if found is None:
            return
        message, segment = found
        self._segment_change(message.id, segment.seq, command_status=status)
        error = reason or f"submit_sm answered with command_status 0x{status:08x}"
        if classify_status(status, self.retry) == "permanent":
            segment.status = SegmentStatus.FAILED
            self._segment_change(message.id, segment.seq, submit_status="failed")
            if message.state in (M.QUEUED, M.SUBMITTING):
                self._finish(message, Trigger.FAIL, now, error=error, command_status=status)
            return
        segment.status = SegmentStatus.PENDING
        self._segment_change(message.id, segment.seq, submit_status="pending")
        self._retry(message, now, error, backoff=True, command_status=status)

    def submit_unknown(self, key: SegmentKey, now: float, reason: str, *, backoff: bool) -> None:
        """No answer (timeout, lost connection): the SMSC may have it; offer it again."""
        found = self._in_flight_segment(key)
        if found is None:
            return
        message, segment = found
        segment.status = SegmentStatus.PENDING
        self._segment_change(message.id, segment.seq, submit_status="pending")
        self._retry(message, now, reason, backoff=backoff)

    def submit_throttled(self, key: SegmentKey, now: float) -> None:
        """The SMSC said "not now" (the session pauses): offer it again, uncounted."""
        found = self._in_flight_segment(key)
        if found is None:
            return
        message, segment = found
        segment.status = SegmentStatus.PENDING
        self._segment_change(message.id, segment.seq, submit_status="pending")
        if message.round_charged:
            message.round_charged = False
            message.attempts -= 1
        self._retry(message, now, "throttled by the SMSC", backoff=False)

    def submit_not_sent(self, key: SegmentKey, now: float) -> None:
        """Handed out but never sent (the client closed): back to the queue, uncounted."""
        self.submit_throttled(key, now)

    def _retry(
        self,
        message: QueuedMessage,
        now: float,
        error: str,
        *,
        backoff: bool,
        command_status: int | None = None,
    ) -> None:
        if message.state is M.QUEUED:
            return  # another segment of this round already re-queued it
        if message.state is not M.SUBMITTING:
            return  # final already
        if message.attempts >= self.retry.max_attempts:
            self._finish(
                message,
                Trigger.FAIL,
                now,
                error=f"{error}; gave up after {message.attempts} attempts",
                command_status=command_status,
            )
            return
        due = now + retry_delay(self.retry, message.attempts) if backoff else now
        if due >= message.expires_at:
            self._finish(message, Trigger.EXPIRE, now, error=f"{error}; validity ran out")
            return
        self._move(message, Trigger.RETRY, now)
        self._schedule(message, due)
        self._message_change(
            message, now, next_attempt_at=due, error=error, command_status=command_status
        )

    # -------------------------------------------------------------- receipts

    def receipt(
        self, smsc: str, receipt: DeliveryReceipt, event_id: str, now: float
    ) -> ReceiptMatch | None:
        """Apply a receipt; None if it matches no segment yet (then it is kept and
        matched when its submit_sm_resp is processed)."""
        key = self._index.find(smsc, receipt.message_id) if receipt.message_id else None
        if key is None:
            if receipt.message_id:
                self._keep_orphan(_Orphan(event_id, smsc, receipt, now), now)
            return None
        return self._apply_receipt(key, receipt, now)

    def _apply_receipt(self, key: SegmentKey, receipt: DeliveryReceipt, now: float) -> ReceiptMatch:
        message = self._messages.get(key[0])
        if message is None:  # final already: a duplicate
            return ReceiptMatch(key, duplicate=True)
        segment = message.segments[key[1] - 1]
        stat = receipt.stat
        if segment.dlr_state is not None and (
            segment.dlr_state == stat or RECEIPT_OUTCOMES.get(segment.dlr_state) is not None
        ):
            return ReceiptMatch(key, duplicate=True)  # same again, or after a final one
        segment.dlr_state = stat
        self._segment_change(
            message.id,
            segment.seq,
            dlr_state=stat,
            dlr_error=receipt.error,
            dlr_at=now,
            dlr_raw=receipt.raw,
        )
        if message.state is M.SUBMITTED:
            self._settle(message, now)
        return ReceiptMatch(key, duplicate=False)

    def _settle(self, message: QueuedMessage, now: float) -> None:
        """Final state from the segments' receipts, once they say enough: the worst
        failure (`_FINAL_ORDER`, first one on a tie) as soon as there is one."""
        worst: str | None = None
        final = 0
        for segment in message.segments:
            stat = segment.dlr_state
            outcome = RECEIPT_OUTCOMES.get(stat) if stat is not None else None
            if outcome is None:
                continue
            final += 1
            if outcome is not Trigger.DELIVERED and (
                worst is None or _failure_rank(stat) < _failure_rank(worst)
            ):
                worst = stat
        if worst is not None:
            trigger = RECEIPT_OUTCOMES[worst]
            assert trigger is not None
            self._finish(message, trigger, now, error=f"receipt {worst}")
        elif final == len(message.segments):
            self._finish(message, Trigger.DELIVERED, now)

    def _keep_orphan(self, orphan: _Orphan, now: float) -> None:
        self.prune_orphans(now)
        if self._orphan_max <= 0 or orphan.receipt.message_id is None:
            return
        while len(self._orphans) >= self._orphan_max:
            oldest, _ = self._orphans.popitem(last=False)
            self._orphan_index.remove((oldest, 0))
        self._orphans[orphan.event_id] = orphan
        self._orphan_index.add(orphan.smsc, orphan.receipt.message_id, (orphan.event_id, 0))

    def add_orphan(
        self, event_id: str, smsc: str, receipt: DeliveryReceipt, received_at: float, now: float
    ) -> None:
        """An unmatched receipt from the store (recovery at start)."""
        if receipt.message_id:
            self._keep_orphan(_Orphan(event_id, smsc, receipt, received_at), now)

    def prune_orphans(self, now: float) -> None:
        while self._orphans:
            event_id, oldest = next(iter(self._orphans.items()))
            if oldest.received_at + self._orphan_ttl > now:
                break
            del self._orphans[event_id]
            self._orphan_index.remove((event_id, 0))

    def _match_orphans(self, smsc: str, smsc_message_id: str, key: SegmentKey, now: float) -> None:
        while (found := self._orphan_index.find(smsc, smsc_message_id)) is not None:
            orphan = self._orphans.pop(found[0])
            self._orphan_index.remove(found)
            self._changes.receipts[orphan.event_id] = key
            self._apply_receipt(key, orphan.receipt, now)

    # -------------------------------------------------------------- bookkeeping

    def _move(self, message: QueuedMessage, trigger: Trigger, now: float) -> None:
        message.state = transition(message.state, trigger)
        self._message_change(message, now, state=message.state.value)

    def _expire(self, message: QueuedMessage, now: float) -> None:
        self._finish(message, Trigger.EXPIRE, now, error="validity ran out before sending")

    def _finish(
        self,
        message: QueuedMessage,
        trigger: Trigger,
        now: float,
        *,
        error: str | None = None,
        command_status: int | None = None,
    ) -> None:
        self._move(message, trigger, now)
        values: Values = {"done_at": now, "next_attempt_at": None}
        if error is not None:
            values["error"] = error
        if command_status is not None:
            values["command_status"] = command_status
        self._message_change(message, now, **values)
        self._changes.finished.append(message.id)
        del self._messages[message.id]
        for segment in message.segments:
            key = (message.id, segment.seq)
            if segment.status is SegmentStatus.IN_FLIGHT:
                segment.status = SegmentStatus.FAILED  # its answer is ignored now
                self.in_flight -= 1
            if key in self._index:
                self._recent[key] = None
        while len(self._recent) > self._recent_max:
            old, _ = self._recent.popitem(last=False)
            self._index.remove(old)

    def _message_change(self, message: QueuedMessage, now: float, **values: object) -> None:
        row = self._changes.messages.setdefault(message.id, {})
        row.update(values)
        row["updated_at"] = now

    def _segment_change(self, message_id: str, seq: int, **values: object) -> None:
        self._changes.segments.setdefault((message_id, seq), {}).update(values)


def segments_from(
    statuses: Iterable[tuple[int, str, str | None, str | None, str | None]],
) -> list[Segment]:
    """Rebuild segments from stored (seq, submit_status, smsc, smsc_message_id, dlr_state)."""
    return [
        Segment(seq, SegmentStatus(status), smsc, smsc_id, dlr)
        for seq, status, smsc, smsc_id, dlr in sorted(statuses)
    ]
