"""The SMSC simulator's own tests, driven by a blocking smpplib client."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
import smpplib.exceptions
import smpplib.smpp

from .blocking_esme import BlockingEsme
from .simulator import SimulatorError, SmscSimulator

DLR_TEXT = re.compile(
    r"^id:(?P<id>\w+) sub:001 dlvrd:(?P<dlvrd>\d{3}) submit date:\d{10} done date:\d{10}"
    r" stat:(?P<stat>[A-Z]+) err:(?P<err>\d{3}) text:(?P<text>.{0,20})$"
)
ESME_RTHROTTLED = 0x58
ESME_RMSGQFUL = 0x14
ESME_RBINDFAIL = 0x0D
ESME_RINVCMDID = 0x03
ESME_RSYSERR = 0x08
STATE_DELIVERED = 2
STATE_UNDELIVERABLE = 5


def esme(sim: SmscSimulator) -> BlockingEsme:
    return BlockingEsme(sim.host, sim.smpp_port)


def dlr_fields(pdu: object) -> dict[str, str]:
    match = DLR_TEXT.match(pdu.short_message.decode())  # type: ignore[attr-defined]
    assert match, pdu.short_message  # type: ignore[attr-defined]
    return match.groupdict()


@pytest.fixture
def bound(smsc: SmscSimulator) -> Iterator[BlockingEsme]:
    with esme(smsc) as client:
        client.bind("transceiver")
        yield client


def test_ready_line_gives_two_distinct_ephemeral_ports(smsc: SmscSimulator) -> None:
    assert smsc.smpp_port != smsc.control_port
    assert smsc.stats()["binds"] == 0


def test_submit_gets_message_id_and_delivery_receipt(smsc: SmscSimulator) -> None:
    with esme(smsc) as client:
        client.bind("transceiver")
        seq = client.submit(
            source_addr="CALLGATE",
            destination_addr="4915112345678",
            short_message=b"Hello world",
            registered_delivery=1,
        )
        resp = client.expect("submit_sm_resp")
        assert resp.sequence == seq
        assert resp.status == 0
        message_id = resp.message_id.decode()
        assert message_id.isdigit()

        dlr = client.expect("deliver_sm")
        assert dlr.esm_class == 0x04
        assert dlr.source_addr.decode() == "4915112345678"
        assert dlr.destination_addr.decode() == "CALLGATE"
        fields = dlr_fields(dlr)
        assert fields["id"] == message_id
        assert fields["stat"] == "DELIVRD"
        assert fields["dlvrd"] == "001"
        assert fields["text"] == "Hello world"
        assert dlr.receipted_message_id.decode() == message_id
        assert dlr.message_state == STATE_DELIVERED

    [record] = smsc.messages()
    assert record["seq"] == seq
    assert record["message_id"] == message_id
    assert record["command_status"] == 0
    assert record["source_addr"] == "CALLGATE"
    assert record["destination_addr"] == "4915112345678"
    assert record["short_message_hex"] == b"Hello world".hex()
    assert record["registered_delivery"] == 1
    assert record["esm_class"] == 0
    assert record["data_coding"] == 0
    assert record["tlvs"] == {}
    assert bytes.fromhex(record["raw_pdu_hex"])[4:8] == b"\x00\x00\x00\x04"
    stats = smsc.wait_for(lambda sim: s if (s := sim.stats())["deliver_resps"] else None)
    assert stats["binds"] == 1
    assert stats["submits"] == 1
    assert stats["unique_messages"] == 1
    assert stats["dlrs_sent"] == 1
    assert stats["deliver_resps"] == {"0": 1}
    assert stats["connections"] == 1


def test_optional_tlvs_and_sar_are_recorded(bound: BlockingEsme, smsc: SmscSimulator) -> None:
    bound.submit(
        short_message=b"part",
        esm_class=0,
        data_coding=8,
        sar_msg_ref_num=0x1234,
        sar_total_segments=3,
        sar_segment_seqnum=2,
    )
    assert bound.expect("submit_sm_resp").status == 0
    [record] = smsc.messages()
    assert record["data_coding"] == 8
    assert record["sar_msg_ref_num"] == 0x1234
    assert record["sar_total_segments"] == 3
    assert record["sar_segment_seqnum"] == 2
    assert record["tlvs"] == {"0x020c": "1234", "0x020e": "03", "0x020f": "02"}


def test_message_payload_is_recorded(bound: BlockingEsme, smsc: SmscSimulator) -> None:
    bound.submit(short_message=None, message_payload=b"x" * 200)
    assert bound.expect("submit_sm_resp").status == 0
    [record] = smsc.messages()
    assert record["short_message_hex"] == ""
    assert record["message_payload_hex"] == (b"x" * 200).hex()


def test_wrong_password_is_refused_with_bindfail(smsc: SmscSimulator) -> None:
    with esme(smsc) as client, pytest.raises(smpplib.exceptions.PDUError) as refused:
        client.bind("transmitter", password="wrong")
    assert refused.value.args[1] == ESME_RBINDFAIL
    assert smsc.stats()["bind_failures"] == 1


def test_refuse_bind_flag(smsc: SmscSimulator) -> None:
    smsc.set_scenario(refuse_bind=True)
    with esme(smsc) as client, pytest.raises(smpplib.exceptions.PDUError) as refused:
        client.bind("receiver")
    assert refused.value.args[1] == ESME_RBINDFAIL


def test_throttle_every_answers_every_nth_submit_throttled() -> None:
    with SmscSimulator().start(throttle_every=2) as sim, esme(sim) as client:
        client.bind("transmitter")
        statuses = []
        for _ in range(4):
            client.submit()
            statuses.append(client.expect("submit_sm_resp").status)
        assert statuses == [0, ESME_RTHROTTLED, 0, ESME_RTHROTTLED]
        records = sim.messages()
        assert [r["command_status"] for r in records] == statuses
        assert [r["message_id"] is None for r in records] == [False, True, False, True]


def test_throttle_burst_set_at_runtime(bound: BlockingEsme, smsc: SmscSimulator) -> None:
    smsc.set_scenario(throttle_burst=3)
    statuses = []
    for _ in range(10):
        bound.submit()
        statuses.append(bound.expect("submit_sm_resp").status)
    # The submits may straddle one second boundary: at most 3 accepted per second.
    assert statuses[:3] == [0, 0, 0]
    assert statuses.count(0) <= 6
    assert statuses.count(ESME_RTHROTTLED) == 10 - statuses.count(0)


def test_msgqful_and_generic_nack(bound: BlockingEsme, smsc: SmscSimulator) -> None:
    smsc.set_scenario(msgqful_every=2)
    bound.submit()
    assert bound.expect("submit_sm_resp").status == 0
    bound.submit()
    assert bound.expect("submit_sm_resp").status == ESME_RMSGQFUL
    smsc.set_scenario(msgqful_every=0, generic_nack_every=1)
    seq = bound.submit()
    nack = bound.expect("generic_nack")
    assert (nack.sequence, nack.status) == (seq, ESME_RSYSERR)


def test_hex_ids_in_resp_but_decimal_in_dlr_text() -> None:
    with SmscSimulator().start(id_format="hex") as sim, esme(sim) as client:
        client.bind("transceiver")
        client.submit(registered_delivery=1)
        message_id = client.expect("submit_sm_resp").message_id.decode()
        dlr = client.expect("deliver_sm")
        assert re.fullmatch(r"[0-9a-f]+", message_id)
        assert not message_id.isdigit()
        assert dlr_fields(dlr)["id"] == str(int(message_id, 16))
        assert dlr.receipted_message_id.decode() == message_id

        sim.set_scenario(dlr_id_format="same")
        client.submit(registered_delivery=1)
        message_id = client.expect("submit_sm_resp").message_id.decode()
        assert dlr_fields(client.expect("deliver_sm"))["id"] == message_id


def test_dlr_stat_and_registered_delivery(bound: BlockingEsme, smsc: SmscSimulator) -> None:
    bound.submit(registered_delivery=0, short_message=b"no receipt")
    bound.submit(registered_delivery=2, short_message=b"failure only")  # DELIVRD: no receipt
    bound.collect("submit_sm_resp", 2)
    smsc.set_scenario(dlr_stat="UNDELIV", dlr_err=11)
    bound.submit(registered_delivery=2, short_message=b"failure only")
    dlr = bound.expect("deliver_sm")
    fields = dlr_fields(dlr)
    assert (fields["stat"], fields["err"], fields["dlvrd"]) == ("UNDELIV", "011", "000")
    assert dlr.message_state == STATE_UNDELIVERABLE
    ids = [r["message_id"] for r in smsc.messages()]
    assert dlr.receipted_message_id.decode() == ids[2]
    assert [d["message_id"] for d in smsc.deliveries()] == [ids[2]]


def test_dlr_delay_zero_sends_no_receipts(bound: BlockingEsme, smsc: SmscSimulator) -> None:
    smsc.set_scenario(dlr_delay_ms=0)
    bound.submit(registered_delivery=1)
    bound.expect("submit_sm_resp")
    smsc.set_scenario(dlr_delay_ms=1)
    bound.submit(registered_delivery=1)
    second = bound.expect("submit_sm_resp").message_id
    assert bound.expect("deliver_sm").receipted_message_id == second
    assert smsc.stats()["dlrs_sent"] == 1


def test_duplicate_and_out_of_order_dlrs() -> None:
    with (
        SmscSimulator().start(dlr_delay_ms=500, out_of_order_dlrs=True) as sim,
        esme(sim) as client,
    ):
        client.bind("transceiver")
        for _ in range(3):  # pipelined, so all three land in one receipt batch
            client.submit(registered_delivery=1)
        ids = [resp.message_id for resp in client.collect("submit_sm_resp", 3)]
        dlrs = client.collect("deliver_sm", 3)
        assert [d.receipted_message_id for d in dlrs] == ids[::-1]

        sim.set_scenario(out_of_order_dlrs=False, duplicate_dlrs=True)
        client.submit(registered_delivery=1)
        message_id = client.expect("submit_sm_resp").message_id
        dlrs = client.collect("deliver_sm", 2)
        assert [d.receipted_message_id for d in dlrs] == [message_id, message_id]
        assert sim.stats()["dlrs_sent"] == 5


def test_drop_after_closes_without_answering(smsc: SmscSimulator) -> None:
    smsc.set_scenario(drop_after=2)
    with esme(smsc) as client:
        client.bind("transmitter")
        client.submit()
        assert client.expect("submit_sm_resp").status == 0
        client.submit()
        with pytest.raises(smpplib.exceptions.ConnectionError):
            client.expect("submit_sm_resp")
    records = smsc.messages()
    assert len(records) == 2
    assert records[1]["dropped"] is True
    assert records[1]["command_status"] is None


def test_malformed_after_sends_a_short_pdu(bound: BlockingEsme, smsc: SmscSimulator) -> None:
    smsc.set_scenario(malformed_after=1)
    bound.submit()
    assert bound.expect("submit_sm_resp").status == 0
    assert bound.client._recv_exact(10) == bytes.fromhex("0000000a800000040000")


def test_unbind_after_makes_smsc_unbind(bound: BlockingEsme, smsc: SmscSimulator) -> None:
    smsc.set_scenario(unbind_after=1)
    bound.submit()
    assert bound.expect("submit_sm_resp").status == 0
    bound.expect("unbind")
    with pytest.raises(smpplib.exceptions.ConnectionError):
        bound.read()
    assert smsc.stats()["smsc_unbinds"] == 1


def test_slow_responses_show_outstanding_window(bound: BlockingEsme, smsc: SmscSimulator) -> None:
    smsc.set_scenario(slow_resp_ms=500, window_check=2)
    seqs = [bound.submit() for _ in range(5)]
    responses = bound.collect("submit_sm_resp", 5)
    assert [r.sequence for r in responses] == seqs
    stats = smsc.stats()
    assert stats["max_outstanding"] == 5
    assert stats["window_violations"] == 3


def test_mo_injection_and_queueing(smsc: SmscSimulator) -> None:
    queued = smsc.inject_mo("4915112345678", "CALLGATE", "queued €")
    assert queued == {"delivered_to": None, "queued": True}
    with esme(smsc) as client:
        client.bind("receiver")
        first = client.expect("deliver_sm")
        assert first.esm_class == 0
        assert first.data_coding == 0
        assert first.short_message == b"queued \x1b\x65"  # GSM 03.38 escape for the euro sign
        sent = smsc.inject_mo("4915112345678", "CALLGATE", "Привет", data_coding=8)
        assert sent["queued"] is False
        second = client.expect("deliver_sm")
        assert second.data_coding == 8
        assert second.short_message == "Привет".encode("utf-16-be")
        assert second.source_addr == b"4915112345678"


def test_transmitter_cannot_receive_mo(smsc: SmscSimulator) -> None:
    with esme(smsc) as client:
        client.bind("transmitter")
        assert smsc.inject_mo("1", "2", "hi")["queued"] is True


def test_unknown_command_gets_generic_nack(bound: BlockingEsme) -> None:
    # command_id 0x00000099 does not exist; sequence 7.
    bound.send_raw(bytes.fromhex("00000010000000990000000000000007"))
    nack = bound.expect("generic_nack")
    assert (nack.sequence, nack.status) == (7, ESME_RINVCMDID)


def test_restart_drops_connections_and_refuses_binds(smsc: SmscSimulator) -> None:
    with esme(smsc) as client:
        client.bind("transceiver")
        smsc.restart(down_ms=1500)
        with pytest.raises(smpplib.exceptions.ConnectionError):
            client.read()
    with esme(smsc) as client, pytest.raises(smpplib.exceptions.PDUError) as refused:
        client.bind("transceiver")
    assert refused.value.args[1] == ESME_RBINDFAIL

    def bind_succeeds(sim: SmscSimulator) -> bool:
        with esme(sim) as again:
            try:
                again.bind("transceiver")
            except smpplib.exceptions.PDUError:
                return False
            return True

    assert smsc.wait_for(bind_succeeds, timeout=5, interval=0.05)


def test_reset_clears_messages_and_stats(bound: BlockingEsme, smsc: SmscSimulator) -> None:
    bound.submit()
    bound.expect("submit_sm_resp")
    smsc.reset()
    assert smsc.messages() == []
    assert smsc.stats()["submits"] == 0


def test_unknown_scenario_flag_is_an_error(smsc: SmscSimulator) -> None:
    with pytest.raises(SimulatorError, match="unknown scenario flag"):
        smsc.set_scenario(no_such_flag=1)
    with pytest.raises(SimulatorError, match="dlr_stat"):
        smsc.set_scenario(dlr_stat="NOPE")


def test_unknown_cli_flag_fails_start() -> None:
    with pytest.raises(SimulatorError, match="did not start"):
        SmscSimulator().start(no_such_flag=1)


def test_simulator_exits_when_stdin_closes() -> None:
    sim = SmscSimulator().start()
    port = sim.smpp_port
    process = sim._process
    assert process is not None and process.stdin is not None
    process.stdin.close()
    assert process.wait(timeout=5) == 0
    sim.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1)


def test_pdus_fed_one_byte_at_a_time(smsc: SmscSimulator) -> None:
    with esme(smsc) as client:
        bind = smpplib.smpp.make_pdu(
            "bind_transceiver", client=client.client, system_id="test", password="secret"
        )
        for octet in bind.generate():
            client.send_raw(bytes((octet,)))
        resp = client.expect("bind_transceiver_resp")
        assert (resp.sequence, resp.status) == (bind.sequence, 0)
    assert smsc.stats()["binds"] == 1


def test_invalid_command_length_is_nacked_and_closed(smsc: SmscSimulator) -> None:
    with esme(smsc) as client:
        client.send_raw(bytes.fromhex("00000008000000040000000000000003"))
        nack = client.expect("generic_nack")
        assert nack.status == 0x02  # ESME_RINVCMDLEN
        with pytest.raises(smpplib.exceptions.ConnectionError):
            client.read()
