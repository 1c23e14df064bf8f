"""The pure SMS queue core: transitions, retries, pacing, receipts, id matching.

Fake time throughout: `now` is a number the test moves.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from smpp.config import SmsRetryConfig
from smpp.pdu import CommandStatus
from smpp.queue import (
    TRANSITIONS,
    DeliveryReceipt,
    MessageState,
    QueuedMessage,
    QueueStateError,
    ReceiptIndex,
    Segment,
    SegmentStatus,
    SmsQueue,
    TokenBucket,
    Trigger,
    canonical_ids,
    classify_status,
    parse_receipt,
    parse_receipt_text,
    retry_delay,
    tolerant_receipt_fields,
    transition,
)

RETRY = SmsRetryConfig(initial_backoff=10.0, max_backoff=100.0, multiplier=2.0, max_attempts=3)
T0 = 1_700_000_000.0


def message(
    mid: str = "m1",
    segments: int = 1,
    account: str = "alice",
    routes: tuple[str, ...] = ("a",),
    expires_at: float = T0 + 3600,
) -> QueuedMessage:
    return QueuedMessage(
        mid, account, routes, expires_at, [Segment(seq) for seq in range(1, segments + 1)]
    )


def delivered(message_id: str) -> DeliveryReceipt:
    return DeliveryReceipt(message_id, "DELIVRD")


# ---------------------------------------------------------------------- transitions


def test_transition_table_rejects_what_it_does_not_list() -> None:
    assert transition(MessageState.QUEUED, Trigger.DISPATCH) is MessageState.SUBMITTING
    with pytest.raises(QueueStateError):
        transition(MessageState.DELIVERED, Trigger.DISPATCH)
    with pytest.raises(QueueStateError):
        transition(MessageState.QUEUED, Trigger.DELIVERED)
    finals = {
        MessageState.DELIVERED,
        MessageState.FAILED,
        MessageState.EXPIRED,
        MessageState.REJECTED,
        MessageState.UNDELIVERABLE,
    }
    assert not [key for key in TRANSITIONS if key[0] in finals]


def test_classification_of_submit_statuses() -> None:
    assert classify_status(0, RETRY) == "ok"
    assert classify_status(CommandStatus.ESME_RTHROTTLED, RETRY) == "temporary"
    assert classify_status(CommandStatus.ESME_RMSGQFUL, RETRY) == "temporary"
    assert classify_status(CommandStatus.ESME_RSYSERR, RETRY) == "temporary"
    assert classify_status(0x0B, RETRY) == "permanent"  # ESME_RINVDSTADR
    assert classify_status(0x0400, RETRY) == "temporary"  # unknown: retried by default
    strict = SmsRetryConfig(unknown_is_temporary=False, permanent_statuses=(0x58,))
    assert classify_status(0x0400, strict) == "permanent"
    assert classify_status(0x58, strict) == "permanent"


def test_retry_delay_grows_and_caps() -> None:
    assert [retry_delay(RETRY, n) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 80, 100]


# ---------------------------------------------------------------------- dispatching


def test_scheduled_message_waits_for_its_time() -> None:
    queue = SmsQueue(RETRY)
    queue.add(message(), due=T0 + 60)
    assert queue.take_due(T0, {"a": 10}) == []
    assert queue.next_wake(T0) == T0 + 60
    assert queue.take_due(T0 + 59.9, {"a": 10}) == []
    dispatched = queue.take_due(T0 + 60, {"a": 10})
    assert [(d.message_id, d.smsc, d.seqs) for d in dispatched] == [("m1", "a", (1,))]
    assert queue.get("m1").state is MessageState.SUBMITTING  # type: ignore[union-attr]


def test_failover_to_the_next_smsc_with_capacity_and_capacity_is_respected() -> None:
    queue = SmsQueue(RETRY)
    for n in range(5):
        queue.add(message(f"m{n}", routes=("a", "b")), due=T0)
    capacity = {"a": 2, "b": 0}
    first = queue.take_due(T0, capacity)
    assert [d.smsc for d in first] == ["a", "a"] and capacity["a"] == 0
    second = queue.take_due(T0, {"a": 0, "b": 10})
    assert [d.smsc for d in second] == ["b", "b", "b"]
    assert queue.next_wake(T0) is None  # nothing waits for time


def test_account_pacing_spreads_a_campaign() -> None:
    bucket = TokenBucket(rate=2.0, burst=2.0)
    queue = SmsQueue(RETRY, {"bulk": bucket})
    for n in range(6):
        queue.add(message(f"b{n}", account="bulk"), due=T0)
    queue.add(message("other"), due=T0)
    got = [d.message_id for d in queue.take_due(T0, {"a": 100})]
    assert got == ["b0", "b1", "other"]  # the campaign does not block another account
    assert queue.next_wake(T0) == pytest.approx(T0 + 0.5)
    assert [d.message_id for d in queue.take_due(T0 + 0.5, {"a": 100})] == ["b2"]
    assert [d.message_id for d in queue.take_due(T0 + 1.5, {"a": 100})] == ["b3", "b4"]


def test_expired_before_sending() -> None:
    queue = SmsQueue(RETRY)
    queue.add(message(expires_at=T0 + 10), due=T0 + 20)
    assert queue.take_due(T0 + 20, {"a": 1}) == []
    changes = queue.take_changes()
    assert changes.finished == ["m1"]
    assert changes.messages["m1"]["state"] == "expired"


# ---------------------------------------------------------------------- answers


def test_temporary_error_backs_off_then_fails_after_max_attempts() -> None:
    queue = SmsQueue(RETRY)
    queue.add(message(), due=T0)
    now = T0
    for attempt in range(1, 4):
        assert len(queue.take_due(now, {"a": 1})) == 1
        queue.submit_failed(("m1", 1), CommandStatus.ESME_RSYSERR, now)
        if attempt < 3:
            assert queue.get("m1").state is MessageState.QUEUED  # type: ignore[union-attr]
            wake = queue.next_wake(now)
            assert wake == now + retry_delay(RETRY, attempt)
            assert queue.take_due(wake - 0.001, {"a": 1}) == []  # type: ignore[operator]
            now = wake  # type: ignore[assignment]
    assert queue.get("m1") is None
    changes = queue.take_changes()
    assert changes.messages["m1"]["state"] == "failed"
    assert "gave up after 3 attempts" in str(changes.messages["m1"]["error"])


def test_permanent_error_fails_at_once() -> None:
    queue = SmsQueue(RETRY)
    queue.add(message(), due=T0)
    queue.take_due(T0, {"a": 1})
    queue.submit_failed(("m1", 1), 0x0B, T0)
    changes = queue.take_changes()
    assert changes.messages["m1"]["state"] == "failed"
    assert changes.messages["m1"]["command_status"] == 0x0B


def test_throttling_is_not_counted_as_an_attempt() -> None:
    queue = SmsQueue(RETRY)
    queue.add(message(), due=T0)
    for _ in range(10):
        queue.take_due(T0, {"a": 1})
        queue.submit_throttled(("m1", 1), T0)
    assert queue.get("m1").attempts == 0  # type: ignore[union-attr]
    assert queue.get("m1").state is MessageState.QUEUED  # type: ignore[union-attr]


def test_accepted_segment_is_never_sent_again() -> None:
    queue = SmsQueue(RETRY)
    queue.add(message(segments=3), due=T0)
    (first,) = queue.take_due(T0, {"a": 10})
    assert first.seqs == (1, 2, 3)
    queue.submit_accepted(("m1", 1), "a", "100", T0)
    queue.submit_unknown(("m1", 2), T0, "connection lost", backoff=False)
    queue.submit_accepted(("m1", 3), "a", "102", T0)  # late answer after the re-queue
    (second,) = queue.take_due(T0, {"a": 10})
    assert second.seqs == (2,)  # only the one whose outcome was unknown
    queue.submit_accepted(("m1", 2), "a", "103", T0)
    assert queue.get("m1").state is MessageState.SUBMITTED  # type: ignore[union-attr]
    assert queue.take_due(T0 + 1000, {"a": 10}) == []
    assert queue.in_flight == 0


# ---------------------------------------------------------------------- receipts


def submitted(queue: SmsQueue, mid: str, smsc_ids: list[str]) -> None:
    queue.add(message(mid, segments=len(smsc_ids)), due=T0)
    queue.take_due(T0, {"a": 100})
    for seq, smsc_id in enumerate(smsc_ids, start=1):
        queue.submit_accepted((mid, seq), "a", smsc_id, T0)


@pytest.mark.parametrize(
    ("stat", "state"),
    [
        ("DELIVRD", "delivered"),
        ("UNDELIV", "undeliverable"),
        ("EXPIRED", "expired"),
        ("REJECTD", "rejected"),
        ("DELETED", "undeliverable"),
        ("UNKNOWN", "undeliverable"),
        ("ACCEPTD", "delivered"),
    ],
)
def test_receipt_states(stat: str, state: str) -> None:
    queue = SmsQueue(RETRY)
    submitted(queue, "m1", ["77"])
    queue.take_changes()
    assert queue.receipt("a", DeliveryReceipt("77", stat), "e1", T0) is not None
    assert queue.take_changes().messages["m1"]["state"] == state


def test_enroute_is_not_final_and_duplicates_are_idempotent() -> None:
    queue = SmsQueue(RETRY)
    submitted(queue, "m1", ["77"])
    first = queue.receipt("a", DeliveryReceipt("77", "ENROUTE"), "e1", T0)
    assert first is not None and not first.duplicate
    assert queue.get("m1").state is MessageState.SUBMITTED  # type: ignore[union-attr]
    assert not queue.receipt("a", delivered("77"), "e2", T0).duplicate  # type: ignore[union-attr]
    queue.take_changes()
    again = queue.receipt("a", delivered("77"), "e3", T0)
    assert again is not None and again.duplicate
    assert not queue.take_changes().messages


def test_multipart_message_final_after_every_segment_receipt() -> None:
    queue = SmsQueue(RETRY)
    submitted(queue, "m1", ["1", "2"])
    queue.receipt("a", delivered("1"), "e1", T0)
    assert queue.get("m1") is not None
    queue.receipt("a", delivered("2"), "e2", T0)
    assert queue.get("m1") is None
    submitted(queue, "m2", ["3", "4"])
    queue.receipt("a", DeliveryReceipt("4", "UNDELIV"), "e3", T0)
    assert queue.take_changes().messages["m2"]["state"] == "undeliverable"


def test_receipt_before_the_submit_answer_is_kept_and_matched_later() -> None:
    queue = SmsQueue(RETRY)
    queue.add(message(), due=T0)
    queue.take_due(T0, {"a": 1})
    assert queue.receipt("a", delivered("f4240"), "early", T0) is None
    assert queue.orphan_count == 1
    queue.submit_accepted(("m1", 1), "a", "1000000", T0)  # same number, decimal
    changes = queue.take_changes()
    assert changes.receipts == {"early": ("m1", 1)}
    assert changes.messages["m1"]["state"] == "delivered"
    assert queue.orphan_count == 0


def test_orphans_expire() -> None:
    queue = SmsQueue(RETRY, orphan_ttl=60)
    queue.receipt("a", delivered("x"), "e1", T0)
    queue.prune_orphans(T0 + 61)
    assert queue.orphan_count == 0


# ---------------------------------------------------------------------- id matching


def test_canonical_ids() -> None:
    assert canonical_ids("1000000") == ("1000000", str(0x1000000))
    assert canonical_ids("f4240") == (None, "1000000")
    assert canonical_ids("000123") == ("123", str(0x123))
    assert canonical_ids("0xF4240") == (None, "1000000")
    assert canonical_ids("abc-123") == (None, None)
    assert canonical_ids("") == (None, None)
    assert canonical_ids("000") == ("0", "0")
    assert canonical_ids("١٢٣") == (None, None)  # digits, but not ASCII ones


@given(st.text(alphabet="0123456789abcdefABCDEFx- ", max_size=20))
def test_canonical_ids_read_ids_as_int_does(text: str) -> None:
    stripped = text.strip()
    decimal, _ = canonical_ids(text)
    expected = str(int(stripped)) if stripped.isdigit() else None
    assert decimal == expected


@pytest.mark.parametrize(
    ("stored", "seen"),
    [
        ("f4240", "f4240"),
        ("f4240", "1000000"),
        ("1000000", "f4240"),
        ("F4240", "f4240"),
        ("0001234", "1234"),
        ("1234", "00001234"),
        ("4d2", "1234"),
        ("abc-9", "abc-9"),
    ],
)
def test_receipt_index_matches_other_spellings(stored: str, seen: str) -> None:
    index = ReceiptIndex()
    index.add("a", stored, ("m", 1))
    assert index.find("a", seen) == ("m", 1)
    assert index.find("b", seen) is None  # ids are per SMSC


def test_receipt_index_prefers_exact_and_refuses_to_guess() -> None:
    index = ReceiptIndex()
    index.add("a", "1000000", ("dec", 1))  # hex reading: 16777216
    index.add("a", "f4240", ("hex", 1))  # = 1000000
    assert index.find("a", "1000000") == ("dec", 1)
    assert index.find("a", "f4240") == ("hex", 1)
    index.add("a", "16777216", ("other", 1))
    # "1000000" spelled with leading zeros: same-base tier has exactly one.
    assert index.find("a", "01000000") == ("dec", 1)
    index.remove(("dec", 1))
    # Now "1000000" could be f4240 (hex of the decimal) or 16777216 (decimal of the hex).
    assert index.find("a", "1000000") is None


def test_receipt_index_an_id_two_segments_share_is_ambiguous_until_one_goes() -> None:
    index = ReceiptIndex()
    index.add("a", "77", ("m1", 1))
    index.add("a", "77", ("m2", 1))
    index.add("a", "77", ("m3", 1))
    assert index.find("a", "77") is None
    assert index.find("a", "0077") is None  # the numeric tiers are shared too
    index.remove(("m2", 1))
    assert index.find("a", "77") is None
    index.remove(("m1", 1))
    assert index.find("a", "77") == ("m3", 1)
    assert index.find("a", "0077") == ("m3", 1)
    index.remove(("m3", 1))
    assert index.find("a", "77") is None and len(index) == 0


@given(st.integers(min_value=0, max_value=2**63))
def test_hex_and_decimal_spellings_always_match(number: int) -> None:
    index = ReceiptIndex()
    index.add("a", format(number, "x"), ("m", 1))
    found = index.find("a", str(number))
    # Only ambiguous when the hex spelling is all digits too (then exact/same-base wins).
    assert found == ("m", 1) or format(number, "x").isdigit()


# ---------------------------------------------------------------------- receipt parsing


def test_receipt_text_full() -> None:
    text = (
        "id:0123456789 sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 "
        "stat:DELIVRD err:000 text:Hello stat:UNDELIV"
    )
    fields = parse_receipt_text(text)
    assert fields["id"] == "0123456789" and fields["stat"] == "DELIVRD"
    assert fields["submit date"] == "2401011200" and fields["done date"] == "2401011201"
    assert fields["text"] == "Hello stat:UNDELIV"  # the text cannot fake a field


_VALUE = st.text(st.sampled_from("0aZ:_-tex\x00é"), max_size=6)
_SEPARATOR = st.sampled_from([" ", " ", " ", "  ", "\t", "\n"])


@given(
    values=st.lists(_VALUE, min_size=7, max_size=7),
    separators=st.lists(_SEPARATOR, min_size=8, max_size=8),
    upper=st.booleans(),
    text=st.one_of(st.none(), st.text(max_size=20)),
    trailer=st.sampled_from(["", " ", " extra:1", "x"]),
)
def test_usual_receipt_layout_reads_as_the_tolerant_parser(
    values: list[str], separators: list[str], upper: bool, text: str | None, trailer: str
) -> None:
    """The one-regex path for the usual layout gives what the field-by-field
    parser gives, for odd values and spacing too (those fall through to it)."""
    keys = ["id", "sub", "dlvrd", "submit date", "done date", "stat", "err"]
    parts = [
        f"{key.upper() if upper else key}:{value}" for key, value in zip(keys, values, strict=True)
    ]
    pairs = zip(separators[:6], parts[1:], strict=True)
    receipt = parts[0] + "".join(sep + part for sep, part in pairs)
    receipt += trailer if text is None else f"{separators[7]}text:{text}"
    assert parse_receipt_text(receipt) == tolerant_receipt_fields(receipt)


def test_receipt_text_tolerates_missing_and_odd_fields() -> None:
    assert parse_receipt_text("id:abc stat:UNDELIV") == {"id": "abc", "stat": "UNDELIV"}
    assert parse_receipt_text("ID:7 Stat:delivrd Err:5") == {
        "id": "7",
        "stat": "delivrd",
        "err": "5",
    }
    assert parse_receipt_text("") == {}
    receipt = parse_receipt({"short_message": b"id:9 stat:DELIVERED"})
    assert receipt.message_id == "9" and receipt.stat == "DELIVRD" and receipt.is_final


def test_receipt_prefers_tlvs() -> None:
    receipt = parse_receipt(
        {
            "short_message": b"id:1000000 sub:001 dlvrd:000 stat:ENROUTE err:000 text:x",
            "receipted_message_id": b"f4240",
            "message_state": 5,
        }
    )
    assert receipt.message_id == "f4240"
    assert receipt.stat == "UNDELIV"
    assert receipt.outcome is Trigger.UNDELIVERABLE


@given(st.binary(max_size=200))
def test_receipt_parser_never_raises(body: bytes) -> None:
    receipt = parse_receipt({"short_message": body})
    assert receipt.raw == body.decode("latin-1")


def test_segment_status_values_match_the_schema() -> None:
    assert {s.value for s in SegmentStatus} == {"pending", "in_flight", "accepted", "failed"}
