"""`SmsService`: the durable SMS queue wired to the store and the SMSC clients.

The adapter around the pure `SmsQueue`: it validates and stores submissions
(group commit, the id is returned only once the row is committed), runs one
dispatch loop that asks the queue what is due and hands segments to one
sender task per SMSC, turns SMSC events into queue inputs, and writes the
queue's changes in batches. Receipts and MO messages are stored before their
deliver_sm is acknowledged (the acknowledgement waits for the commit without
holding up the next deliver_sm).

Time: `clock` is wall-clock epoch seconds (schedules and validity outlive the
process); the SMSC clients keep their own monotonic clock.

Recovery at `start()`: messages left `submitting` have segments whose outcome
is unknown (the process died between submit_sm and its answer); they are
offered again, so the SMSC may see them twice. That is the at-least-once
contract; it is logged per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from gateway.logs import get_logger
from gateway.store.database import Store
from smpp.account_limits import SubmitLimits
from smpp.client import SmscClient, SmscClientClosedError, SmscHandler
from smpp.config import SmscConfig, SmsConfig
from smpp.content_filter import ContentFilter
from smpp.encoding import (
    Coding,
    ConcatMethod,
    ConcatReferences,
    Segment,
    SmsEncodingError,
    choose_coding,
    decode_text,
    reference_bits,
    split_message,
)
from smpp.pdu import CommandStatus, ParamValue, PduEncodeError
from smpp.queue import (
    Changes,
    DeliveryReceipt,
    MessageState,
    QueuedMessage,
    SegmentKey,
    SegmentStatus,
    SmsQueue,
    TokenBucket,
    parse_receipt,
    segments_from,
)
from smpp.queue import Segment as QueueSegment
from smpp.repository import (
    MessageStatus,
    SmsRepository,
    SmsStats,
    SmsWriter,
    StoredMessage,
)
from smpp.routing import (
    BadNumberError,
    MoDirectory,
    MtRouter,
    NumberNormaliser,
    SourceAddress,
    mo_destination,
    source_address,
)
from smpp.session import (
    Bound,
    ConnectionLost,
    DeliverSm,
    ResponseTimeout,
    SubmitResponse,
    Throttled,
)
from smpp.submit_result import Accepted, Rejected, RejectReason, SubmitResult

_log = get_logger("smpp.service")

DELIVER_OK: Final = int(CommandStatus.ESME_ROK)
DELIVER_RETRY: Final = int(CommandStatus.ESME_RX_T_APPN)
"""deliver_sm answer when the receipt/MO could not be stored: the SMSC tries again."""
INTERNATIONAL: Final = 1
ISDN: Final = 1


_id_bits = random.Random(os.urandom(16))  # noqa: S311 - unique ids, not secrets; no syscall each
os.register_at_fork(after_in_child=lambda: _id_bits.seed(os.urandom(16)))
SECONDS_PER_DAY: Final = 86_400


def new_id(now: float) -> str:
    """Time-ordered, unique without coordination: ms since the epoch + 48 random bits."""
    return "%011x%012x" % (int(now * 1000), _id_bits.getrandbits(48))  # noqa: UP031 - 1.6x faster than the f-string


def utc_day(now: float) -> str:
    return _utc_day_number(int(now // SECONDS_PER_DAY))


@functools.lru_cache(maxsize=4)
def _utc_day_number(day: int) -> str:
    return dt.datetime.fromtimestamp(day * SECONDS_PER_DAY, dt.UTC).strftime("%Y-%m-%d")


def smpp_absolute_time(epoch: float) -> str:
    """SMPP 3.4 §7.1.1 absolute time in UTC: YYMMDDhhmmsstnnp."""
    return _absolute_time_second(int(epoch))


@functools.lru_cache(maxsize=1024)  # formatted per message otherwise: one per second is enough
def _absolute_time_second(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%y%m%d%H%M%S") + "000+"


@dataclass(slots=True)
class _Outgoing:
    """What the senders need to build a message's submit_sm PDUs."""

    source: SourceAddress
    destination: str
    """Digits of the E.164 destination (no '+')."""
    text: str
    coding: Coding
    method: ConcatMethod
    ref: int
    expires_at: float
    payload: list[Segment] | None = None
    validity_period: str = ""

    def __post_init__(self) -> None:
        self.validity_period = smpp_absolute_time(self.expires_at)

    def segment(self, seq: int) -> Segment:
        if self.payload is None:
            self.payload = split_message(self.text, self.coding, self.method, self.ref)
        return self.payload[seq - 1]


class SmsService(SmscHandler):
    """The SMS gateway's MT queue, receipts and MO intake."""

    def __init__(
        self,
        config: SmsConfig,
        smscs: tuple[SmscConfig, ...],
        store: Store,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._smsc_configs = {smsc.name: smsc for smsc in smscs}
        self._clock = clock
        self._normaliser = NumberNormaliser(config.default_region)
        self._router = MtRouter(config)
        unknown = sorted(self._router.smsc_names() - set(self._smsc_configs))
        if unknown:
            raise ValueError(f"[[sms.routes]] name unknown SMSC(s): {', '.join(unknown)}")
        self._directory = MoDirectory(config, self._normaliser)
        self._filter = ContentFilter(config.filter)
        self._limits = SubmitLimits(config.accounts)
        self._references = {8: ConcatReferences(8), 16: ConcatReferences(16)}
        self._repository = SmsRepository(store)
        pacing = {
            entry.account: TokenBucket(entry.send_rate, float(entry.send_burst))
            for entry in config.accounts
            if entry.send_rate is not None
        }
        self._queue = SmsQueue(
            config.retry,
            pacing,
            recent_segments=config.dlr_match_cache,
            orphan_ttl=config.orphan_dlr_ttl,
            orphan_max=config.orphan_dlr_max,
        )
        self._writer = SmsWriter(self._repository, config.write_batch, self._take_changes)
        self._outgoing: dict[str, _Outgoing] = {}
        self._idempotent: dict[tuple[str, str], asyncio.Future[SubmitResult]] = {}
        self._last_answer: tuple[asyncio.Future[None], asyncio.Future[int]] | None = None
        self._clients: dict[str, SmscClient] = {}
        self._outstanding: dict[str, int] = {name: 0 for name in self._smsc_configs}
        self._sends: dict[str, deque[SegmentKey]] = {name: deque() for name in self._smsc_configs}
        self._send_ready: dict[str, asyncio.Event] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._progress_watched = False
        self._stopping = False
        self._started = False
        self.possible_duplicates = 0
        """Segments offered again after an unknown outcome (since start)."""

    # -------------------------------------------------------------- lifecycle

    @property
    def clients(self) -> dict[str, SmscClient]:
        return dict(self._clients)

    @property
    def orphan_receipts(self) -> int:
        """Receipts kept unmatched, to be matched when their submit_sm_resp comes."""
        return self._queue.orphan_count

    @property
    def store_writes(self) -> tuple[int, int, float]:
        """(transactions committed, rows written, seconds the writer was busy) since
        start: what group commit buys, and whether the writer is the limit."""
        return self._writer.batches, self._writer.rows, self._writer.busy_seconds

    async def start(self) -> None:
        """Recover what the last run left, then connect to the SMSCs and start sending."""
        if self._started:
            return
        self._started = True
        self._writer.start()
        now = self._clock()
        self._limits.load(utc_day(now), await self._repository.daily_counts(utc_day(now)))
        for stored in await self._repository.load_open():
            self._recover(stored, now)
        for orphan in await self._repository.load_orphans(now - self.config.orphan_dlr_ttl):
            receipt = DeliveryReceipt(
                orphan.receipted_id, orphan.stat, orphan.err, orphan.message_state, raw=orphan.raw
            )
            self._queue.add_orphan(orphan.event_id, orphan.smsc, receipt, orphan.received_at, now)
        self._collect_changes()
        for name, smsc in self._smsc_configs.items():
            client = SmscClient(smsc, self)
            self._clients[name] = client
            self._send_ready[name] = asyncio.Event()
            client.start()
            self._tasks.append(asyncio.create_task(self._sender(name), name=f"sms-send-{name}"))
        self._tasks.append(asyncio.create_task(self._dispatch_loop(), name="sms-dispatch"))
        _log.info(
            "sms_service_started",
            open_messages=len(self._queue),
            orphan_receipts=self.orphan_receipts,
        )

    def _recover(self, stored: StoredMessage, now: float) -> None:
        row = stored.row
        message_id = str(row["id"])
        state = MessageState(row["state"])
        segments = segments_from(
            (s["seq"], s["submit_status"], s["smsc"], s["smsc_message_id"], s["dlr_state"])
            for s in stored.segments
        )
        unknown = [s for s in segments if s.status is SegmentStatus.IN_FLIGHT]
        for segment in unknown:
            segment.status = SegmentStatus.PENDING
            self._writer.update_segment((message_id, segment.seq), submit_status="pending")
        if unknown:
            self.possible_duplicates += len(unknown)
            _log.warning(
                "sms_resubmit_unknown_outcome",
                message_id=message_id,
                segments=[s.seq for s in unknown],
            )
        routes = self._router.route("+" + row["destination"].lstrip("+")) or ()
        all_accepted = all(s.status is SegmentStatus.ACCEPTED for s in segments)
        if state is not MessageState.SUBMITTED and all_accepted:
            state = MessageState.SUBMITTED
        elif state is not MessageState.SUBMITTED:
            state = MessageState.QUEUED
        if state.value != row["state"]:
            self._writer.update_message(message_id, state=state.value, updated_at=now)
        message = QueuedMessage(
            id=message_id,
            account=row["account"],
            routes=routes,
            expires_at=float(row["expires_at"]),
            segments=segments,
            state=state,
            attempts=int(row["attempts"]),
        )
        due = max(float(row["next_attempt_at"] or 0.0), float(row["scheduled_at"] or 0.0))
        self._queue.add(message, due)
        if state is MessageState.QUEUED:
            self._outgoing[message_id] = _Outgoing(
                source_address(row["source"], self._normaliser),
                row["destination"].lstrip("+"),
                row["text"],
                Coding(row["data_coding"]),
                row["concat_method"],
                int(row["concat_ref"]),
                float(row["expires_at"]),
            )

    async def stop(self) -> None:
        """Stop sending, let answers to submits in flight arrive, unbind, write the rest."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        self._wake.set()
        grace = self.config.stop_grace
        await asyncio.gather(
            *(client.close(grace) for client in self._clients.values()), return_exceptions=True
        )
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        now = self._clock()
        for name, sends in self._sends.items():
            while sends:
                self._outstanding[name] -= 1
                self._queue.submit_not_sent(sends.popleft(), now)
        self._collect_changes()
        await self._writer.close()
        _log.info("sms_service_stopped", open_messages=len(self._queue))

    async def drain(self, timeout: float) -> bool:
        """Wait until nothing is due or in flight and every change is stored; False
        on timeout. Scheduled or backed-off messages and pending receipts may remain."""
        try:
            async with asyncio.timeout(timeout):
                while not self._quiet():
                    await self._wait_progress()
                await self._writer.flush()
        except TimeoutError:
            return False
        return True

    def _quiet(self) -> bool:
        return self._queue.idle(self._clock()) and not any(self._sends.values())

    async def wait_final(self, message_ids: Iterable[str], timeout: float) -> bool:
        """Wait until every message is final (and stored); False on timeout."""
        wanted = list(message_ids)
        done = 0  # wanted[:done] are final (a final message never comes back)
        try:
            async with asyncio.timeout(timeout):
                while done < len(wanted):
                    if self._queue.get(wanted[done]) is None:
                        done += 1
                        continue
                    await self._wait_progress()
                await self._writer.flush()
        except TimeoutError:
            return False
        return True

    async def _wait_progress(self) -> None:
        self._progress_watched = True
        await self._progress.wait()

    def _notify_progress(self) -> None:
        if self._progress_watched:  # a fresh Event per queue input only when awaited
            self._progress_watched = False
            self._progress.set()
            self._progress = asyncio.Event()

    # -------------------------------------------------------------- submitting

    async def submit(
        self,
        account: str,
        source: str,
        destination: str,
        text: str,
        *,
        idempotency_key: str | None = None,
        scheduled_at: float | None = None,
        validity: float | None = None,
    ) -> SubmitResult:
        """Accept a message for delivery: its id once it is stored, or why not.

        With an `idempotency_key`, a second submit with the same key (same
        account) returns the first one's id with `duplicate=True`.
        """
        if idempotency_key is None:
            return await self._submit(
                account, source, destination, text, None, scheduled_at, validity
            )
        slot = (account, idempotency_key)
        pending = self._idempotent.get(slot)
        if pending is not None:
            earlier = await asyncio.shield(pending)
            if isinstance(earlier, Accepted):
                return Accepted(earlier.message_id, earlier.segments, duplicate=True)
            return earlier
        answer: asyncio.Future[SubmitResult] = asyncio.get_running_loop().create_future()
        self._idempotent[slot] = answer
        result: SubmitResult = Rejected.of(RejectReason.UNAVAILABLE, "submit interrupted")
        try:
            found = await self._repository.find_idempotent(account, idempotency_key)
            if found is not None:
                result = Accepted(found[0], found[1], duplicate=True)
            else:
                result = await self._submit(
                    account, source, destination, text, idempotency_key, scheduled_at, validity
                )
        finally:
            answer.set_result(result)
            del self._idempotent[slot]
        return result

    async def _submit(
        self,
        account: str,
        source: str,
        destination: str,
        text: str,
        idempotency_key: str | None,
        scheduled_at: float | None,
        validity: float | None,
    ) -> SubmitResult:
        now = self._clock()
        try:
            e164 = self._normaliser.e164(destination)
        except BadNumberError as exc:
            return Rejected.of(RejectReason.BAD_NUMBER, str(exc))
        try:
            sender = source_address(source, self._normaliser)
        except BadNumberError as exc:
            return Rejected.of(RejectReason.BAD_NUMBER, f"source: {exc}", command_status=0x0A)
        routes = self._router.route(e164)
        if not routes:
            return Rejected.of(RejectReason.NO_ROUTE, f"no route for {e164}")
        lifetime = self.config.validity if validity is None else validity
        start = now if scheduled_at is None else max(now, scheduled_at)
        if lifetime <= 0:
            return Rejected.of(
                RejectReason.BAD_MESSAGE, "validity must be positive", command_status=0x62
            )
        expires_at = start + lifetime
        digits = e164[1:]
        coding = choose_coding(text, self.config.allow_latin1)
        method = self._smsc_configs[routes[0]].concatenation
        try:
            segments = split_message(text, coding, method, 0)
            ref = 0
            if len(segments) > 1:
                ref = self._references[reference_bits(method)].next(digits)
                segments = split_message(text, coding, method, ref)
        except SmsEncodingError as exc:
            return Rejected.of(
                RejectReason.BAD_MESSAGE, str(exc), command_status=exc.command_status
            )
        message_id = new_id(now)
        row: dict[str, object] = {
            "id": message_id,
            "account": account,
            "idempotency_key": idempotency_key,
            "source": source,
            "destination": e164,
            "text": text,
            "data_coding": int(coding),
            "segments": len(segments),
            "concat_method": method,
            "concat_ref": ref,
            "state": MessageState.QUEUED.value,
            "attempts": 0,
            "next_attempt_at": None,
            "scheduled_at": scheduled_at,
            "expires_at": expires_at,
            "smsc": None,
            "command_status": None,
            "error": None,
            "created_at": now,
            "updated_at": now,
            "submitted_at": None,
            "done_at": None,
        }
        refused = self._filter.check(account, text)
        if refused is not None:
            row.update(
                state=MessageState.REJECTED.value, error=f"content filter: {refused}", done_at=now
            )
            result = await self._store(row, [], None, account, idempotency_key)
            if isinstance(result, Accepted):
                return Rejected.of(RejectReason.FILTER, refused, message_id=result.message_id)
            return result
        day = utc_day(now)
        hit = self._limits.admit(account, now, day)
        if hit is not None:
            return Rejected.of(hit.reason, hit.detail)
        segment_rows: list[dict[str, object]] = [
            {
                "message_id": message_id,
                "seq": seq,
                "submit_status": "pending",
                "smsc": None,
                "smsc_message_id": None,
                "command_status": None,
                "submitted_at": None,
                "dlr_state": None,
                "dlr_error": None,
                "dlr_at": None,
                "dlr_raw": None,
            }
            for seq in range(1, len(segments) + 1)
        ]
        result = await self._store(row, segment_rows, (account, day), account, idempotency_key)
        if not isinstance(result, Accepted) or result.duplicate:
            self._limits.release(account, day)
            return result
        self._outgoing[message_id] = _Outgoing(
            sender, digits, text, coding, method, ref, expires_at, segments
        )
        self._queue.add(
            QueuedMessage(
                message_id,
                account,
                routes,
                expires_at,
                [QueueSegment(seq) for seq in range(1, len(segments) + 1)],
            ),
            start,
        )
        self._wake.set()
        return result

    async def _store(
        self,
        row: dict[str, object],
        segments: list[dict[str, object]],
        counter: tuple[str, str] | None,
        account: str,
        key: str | None,
    ) -> SubmitResult:
        message_id = str(row["id"])
        try:
            stored = await self._writer.insert_message(row, segments, counter)
        except Exception as exc:  # noqa: BLE001 - the store's error becomes the answer
            _log.error("sms_store_failed", message_id=message_id, error=repr(exc))
            result: SubmitResult = Rejected.of(RejectReason.UNAVAILABLE, "store unavailable")
        else:
            if stored:
                result = Accepted(message_id, len(segments))
            else:  # the key was taken meanwhile (another node, or a race)
                found = await self._repository.find_idempotent(account, key or "")
                result = (
                    Accepted(found[0], found[1], duplicate=True)
                    if found is not None
                    else Rejected.of(RejectReason.UNAVAILABLE, "idempotency conflict")
                )
        return result

    # -------------------------------------------------------------- queries

    async def status(self, account: str, message_id: str) -> MessageStatus | None:
        """The message as stored, after writing what is pending; None if unknown
        (or another account's)."""
        self._collect_changes()
        await self._writer.flush()
        return await self._repository.message_status(account, message_id)

    async def stats(self, account: str) -> SmsStats:
        self._collect_changes()
        await self._writer.flush()
        return await self._repository.stats(account)

    # -------------------------------------------------------------- dispatching

    def _capacity(self) -> dict[str, int]:
        slack = self.config.dispatch_slack
        return {
            name: (self._smsc_configs[name].window * slack - self._outstanding[name])
            if client.is_bound
            else 0
            for name, client in self._clients.items()
        }

    async def _dispatch_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            now = self._clock()
            try:
                for dispatch in self._queue.take_due(now, self._capacity()):
                    sends = self._sends[dispatch.smsc]
                    for seq in dispatch.seqs:
                        sends.append((dispatch.message_id, seq))
                    self._outstanding[dispatch.smsc] += len(dispatch.seqs)
                    self._send_ready[dispatch.smsc].set()
                self._queue.prune_orphans(now)
                self._collect_changes()
            except Exception:  # noqa: BLE001 - a bug must not stop the queue for good
                _log.exception("sms_dispatch_failed")
            wake_at = self._queue.next_wake(now)
            if self._wake.is_set():
                continue
            timeout = None if wake_at is None else max(0.0, wake_at - self._clock())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _sender(self, name: str) -> None:
        client = self._clients[name]
        sends = self._sends[name]
        ready = self._send_ready[name]
        while True:
            if not sends:
                ready.clear()
                await ready.wait()
                continue
            key = sends.popleft()
            try:
                params = self._params(key)
            except (KeyError, SmsEncodingError) as exc:
                self._answered(name)
                self._queue.submit_failed(
                    key,
                    CommandStatus.ESME_RSYSERR,
                    self._clock(),
                    f"cannot build submit_sm: {exc!r}",
                )
                self._collect_changes()
                continue
            try:
                await client.submit(key, params)
            except PduEncodeError as exc:
                self._answered(name)
                self._queue.submit_failed(key, exc.command_status, self._clock(), str(exc))
                self._collect_changes()
            except SmscClientClosedError:
                self._answered(name)
                self._queue.submit_not_sent(key, self._clock())
                self._collect_changes()

    def _params(self, key: SegmentKey) -> dict[str, ParamValue]:
        outgoing = self._outgoing[key[0]]
        segment = outgoing.segment(key[1])
        source = outgoing.source
        params: dict[str, ParamValue] = {
            "source_addr_ton": source.ton,
            "source_addr_npi": source.npi,
            "source_addr": source.addr,
            "dest_addr_ton": INTERNATIONAL,
            "dest_addr_npi": ISDN,
            "destination_addr": outgoing.destination,
            "esm_class": segment.esm_class,
            "data_coding": segment.data_coding,
            "short_message": segment.short_message,
            "validity_period": outgoing.validity_period,
        }
        if self.config.registered_delivery is not None:
            params["registered_delivery"] = self.config.registered_delivery
        if segment.sar_msg_ref_num is not None:
            params["sar_msg_ref_num"] = segment.sar_msg_ref_num
            params["sar_total_segments"] = segment.sar_total_segments or 0
            params["sar_segment_seqnum"] = segment.sar_segment_seqnum or 0
        if segment.message_payload is not None:
            params["message_payload"] = segment.message_payload
        return params

    def _answered(self, smsc: str) -> None:
        self._outstanding[smsc] -= 1
        self._wake.set()

    def _collect_changes(self) -> None:
        """After a queue input: the writer takes the changes with its next batch."""
        self._writer.changes_ready()
        self._notify_progress()

    def _take_changes(self) -> Changes:
        changes = self._queue.take_changes()
        for message_id in changes.finished:
            self._outgoing.pop(message_id, None)
        return changes

    # -------------------------------------------------------------- SmscHandler

    async def on_bound(self, smsc: str, event: Bound) -> None:
        self._wake.set()

    async def on_submit_response(self, smsc: str, event: SubmitResponse) -> None:
        key = _key(event.message_ref)
        self._answered(smsc)
        now = self._clock()
        if event.status == CommandStatus.ESME_ROK and not event.nacked:
            self._queue.submit_accepted(key, smsc, event.message_id, now)
        else:
            reason = "generic_nack" if event.nacked else "submit_sm_resp"
            self._queue.submit_failed(
                key, event.status, now, f"{reason} command_status 0x{event.status:08x}"
            )
        self._collect_changes()

    async def on_throttled(self, smsc: str, event: Throttled) -> None:
        self._answered(smsc)
        self._queue.submit_throttled(_key(event.message_ref), self._clock())
        self._collect_changes()

    async def on_response_timeout(self, smsc: str, event: ResponseTimeout) -> None:
        key = _key(event.message_ref)
        self._answered(smsc)
        self.possible_duplicates += 1
        _log.warning("sms_submit_timeout", smsc=smsc, message_id=key[0], seq=key[1])
        self._queue.submit_unknown(key, self._clock(), "no submit_sm_resp in time", backoff=True)
        self._collect_changes()

    async def on_connection_lost(self, smsc: str, event: ConnectionLost) -> None:
        now = self._clock()
        for ref in event.unacked:
            self._answered(smsc)
            self.possible_duplicates += 1
            self._queue.submit_unknown(
                _key(ref), now, f"connection lost: {event.reason}", backoff=False
            )
        if event.unacked:
            _log.warning(
                "sms_resubmit_after_connection_loss", smsc=smsc, segments=len(event.unacked)
            )
        self._collect_changes()
        self._wake.set()

    async def on_deliver(self, smsc: str, event: DeliverSm) -> int | asyncio.Future[int]:
        now = self._clock()
        if event.is_receipt:
            durable = self._receipt(smsc, event, now)
        else:
            durable = self._mo(smsc, event, now)
        return self._answer_once_stored(durable)

    def _answer_once_stored(self, durable: asyncio.Future[None]) -> asyncio.Future[int]:
        """The deliver_sm answer: OK once `durable` is committed, a temporary error if
        that fails. The writer hands out one future per commit; so does this."""
        last = self._last_answer
        if last is not None and last[0] is durable:
            return last[1]
        answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        def done(stored: asyncio.Future[None]) -> None:
            if answer.done():
                return
            if stored.cancelled() or stored.exception() is not None:
                answer.set_result(DELIVER_RETRY)
            else:
                answer.set_result(DELIVER_OK)

        durable.add_done_callback(done)
        self._last_answer = (durable, answer)
        return answer

    def _receipt(self, smsc: str, event: DeliverSm, now: float) -> asyncio.Future[None]:
        """A matched receipt is stored in its segment's row (a queue change), a
        duplicate changes nothing; both are answered after the next commit, which
        carries the segment's change (or the earlier one a duplicate repeats). Only
        an unmatched receipt gets a row of its own, to be matched after a restart."""
        receipt = parse_receipt(event.params)
        event_id = new_id(now)
        match = self._queue.receipt(smsc, receipt, event_id, now)
        self._collect_changes()
        if match is not None:
            return self._writer.durable()
        _log.info(
            "sms_receipt_unmatched", smsc=smsc, receipted_id=receipt.message_id, stat=receipt.stat
        )
        return self._writer.durable(
            dlr_event={
                "id": event_id,
                "smsc": smsc,
                "receipted_id": receipt.message_id,
                "stat": receipt.stat,
                "err": receipt.error,
                "message_state": receipt.message_state,
                "raw": receipt.raw,
                "received_at": now,
                "message_id": None,
                "seq": None,
            }
        )

    def _mo(self, smsc: str, event: DeliverSm, now: float) -> asyncio.Future[None]:
        pdu = event.pdu
        destination = mo_destination(
            pdu.text("destination_addr"), pdu.integer("dest_addr_ton"), self._normaliser
        )
        source = pdu.text("source_addr")
        if pdu.integer("source_addr_ton") == INTERNATIONAL and source.isdigit():
            source = "+" + source
        owner = self._directory.owner(destination)
        body = pdu.octets("message_payload") or pdu.octets("short_message")
        esm_class = pdu.integer("esm_class")
        data_coding = pdu.integer("data_coding")
        user_data = body[body[0] + 1 :] if esm_class & 0x40 and body else body
        mo_id = new_id(now)
        channels = owner.channels if owner is not None else ()
        _log.info(
            "sms_mo_received", smsc=smsc, mo_id=mo_id, account=owner.account if owner else None
        )
        return self._writer.durable(
            mo={
                "id": mo_id,
                "smsc": smsc,
                "source": source,
                "destination": destination,
                "account": owner.account if owner else None,
                "text": _mo_text(user_data, data_coding),
                "data_coding": data_coding,
                "esm_class": esm_class,
                "short_message_hex": body.hex(),
                "received_at": now,
            },
            mo_deliveries=[
                {
                    "mo_id": mo_id,
                    "channel": channel,
                    "state": "delivered" if channel == "store" else "pending",
                    "attempts": 1 if channel == "store" else 0,
                    "updated_at": now,
                }
                for channel in channels
            ],
        )


def _key(ref: object) -> SegmentKey:
    assert isinstance(ref, tuple) and len(ref) == 2
    message_id, seq = ref
    return str(message_id), int(seq)


def _mo_text(user_data: bytes, data_coding: int) -> str | None:
    """The MO text when the alphabet is one we know; None otherwise (hex is kept)."""
    coding = {0x00: Coding.GSM7, 0x01: Coding.LATIN1, 0x03: Coding.LATIN1, 0x08: Coding.UCS2}.get(
        data_coding & 0x0F if data_coding < 0x10 else data_coding
    )
    if coding is None:
        return None
    try:
        return decode_text(user_data, coding)
    except SmsEncodingError:
        return user_data.decode("latin-1") if coding is Coding.GSM7 else None


__all__ = [
    "Accepted",
    "MessageStatus",
    "RejectReason",
    "Rejected",
    "SmsService",
    "SmsStats",
    "SubmitResult",
]
