"""The drop copy against a real nats-server: every journal record once, in order, with its id,
across drop copy restarts and NATS outages; an unreadable record counted and skipped."""
from __future__ import annotations

import dataclasses
import os
import time
from types import SimpleNamespace

import pytest

from appliance.dropcopy.config import parse_dropcopy_params
from appliance.oms import journal_records as jr
from appliance.oms.journal_format import RECORD_HEADER_SIZE
from appliance.oms.journal_records import RecordType, SessionEvent
from conftest import wait_until
from dropcopy_rig import DAY_NS, JournalWriter, Running, stream_messages
from nats_server import nats_server   # noqa: F401  (the fixture)


def config_for(server, journal_path, **params):
    layout = SimpleNamespace(path=str(journal_path), name="venue1", processes={})
    return parse_dropcopy_params({"nats": {"url": server.url}, "journal": str(journal_path), **params}, layout)


def assert_once_in_order(messages, day, count):
    assert [m[1] for m in messages] == [f"venue1:{day}:{s}" for s in range(1, count + 1)]
    assert {m[0] for m in messages} == {"appliance.venue1.events"}
    assert [m[2]["sequence"] for m in messages] == list(range(1, count + 1))


@pytest.fixture
def journal(tmp_path):
    writer = JournalWriter(str(tmp_path / "oms-journal.bin"))
    try:
        yield writer
    finally:
        writer.close()


def test_every_record_arrives_once_in_order_with_its_message_id(nats_server, journal):
    count = sum(journal.order_life() for _ in range(20))
    day = journal.journal.trading_day
    running = Running(config_for(nats_server, journal.journal.path, batch=16))
    try:
        wait_until(lambda: running.copy.stats.last_sequence == count, 30, message="every record published")
        count += sum(journal.order_life() for _ in range(5))      # appended while it runs: tailed
        wait_until(lambda: running.copy.stats.last_sequence == count, 30, message="the new records published")
        wait_until(lambda: running.copy.stats.lag_records == 0, 10, message="no lag")
    finally:
        running.stop()
    messages = stream_messages(nats_server)
    assert_once_in_order(messages, day, count)
    events = [m[2]["event"] for m in messages[:7]]
    assert events == ["SENT_NEW", "ACCEPTED", "EXECUTED", "GATE_CHANGED", "KILL", "REJECTED_LOCALLY", "SENT_CANCEL"]
    executed = messages[2][2]
    assert (executed["appliance"], executed["trading_day"], executed["strategy_id"], executed["client_order_id"],
            executed["match_number"], executed["shares"]) == ("venue1", day, 42, 1, 1, 40)
    assert running.copy.stats.published == count and running.copy.stats.duplicates == 0
    assert running.copy.stats.unreadable == 0


def test_a_restarted_drop_copy_resumes_after_what_the_stream_holds(nats_server, journal):
    count = sum(journal.order_life() for _ in range(10))
    first = Running(config_for(nats_server, journal.journal.path))
    try:
        wait_until(lambda: first.copy.stats.last_sequence == count, 30, message="first run published")
    finally:
        first.stop()
    count += sum(journal.order_life() for _ in range(10))
    second = Running(config_for(nats_server, journal.journal.path))
    try:
        wait_until(lambda: second.copy.stats.last_sequence == count, 30, message="second run caught up")
        # the venue messages after the resume point still name their orders (learnt from the history)
    finally:
        second.stop()
    assert second.copy.stats.published == 70 and second.copy.stats.duplicates == 0
    messages = stream_messages(nats_server)
    assert_once_in_order(messages, journal.journal.trading_day, count)
    assert messages[71][2]["event"] == "ACCEPTED" and messages[71][2]["client_order_id"] == 11


def test_nats_stopped_mid_stream_and_restarted_loses_and_doubles_nothing(nats_server, journal):
    count = sum(journal.order_life() for _ in range(200))
    running = Running(config_for(nats_server, journal.journal.path, batch=16,
                                 retry={"initial_ms": 50, "max_ms": 200}))
    try:
        wait_until(lambda: running.copy.stats.last_sequence > 0, 30, message="publishing under way")
        nats_server.kill()                                         # mid-stream: batches in flight
        wait_until(lambda: not running.copy.stats.connected, 30, message="the drop copy seeing NATS gone")
        count += sum(journal.order_life() for _ in range(10))     # the appliance keeps journaling
        wait_until(lambda: running.copy.stats.lag_records == count - running.copy.stats.last_sequence, 10,
                   message="the lag counting the backlog")
        assert running.copy.stats.lag_records >= 70 and running.copy.stats.lag_us > 0
        nats_server.start()
        wait_until(lambda: running.copy.stats.last_sequence == count, 60, message="caught up after the outage")
        wait_until(lambda: running.copy.stats.lag_records == 0, 10, message="no lag after catching up")
    finally:
        running.stop()
    assert running.copy.stats.publish_errors >= 1
    assert_once_in_order(stream_messages(nats_server), journal.journal.trading_day, count)


def stream_last_sequence(server, stream: str = "APPLIANCE_EVENTS") -> int:
    import asyncio
    import nats

    async def look():
        nc = await nats.connect(server.url, connect_timeout=5)
        try:
            return (await nc.jetstream().stream_info(stream)).state.last_seq
        finally:
            await nc.close()
    return asyncio.run(look())


def test_a_connection_lost_with_acknowledgements_in_flight_loses_and_doubles_nothing(nats_server, journal):
    """The stream stores events whose acknowledgements never reach the drop copy (held back, then
    the connection cut): the next session resumes after what the stream holds, nothing published
    twice, nothing left out."""
    from tcp_cut import TcpCut
    count = sum(journal.order_life() for _ in range(500))   # far more than the window: it cannot be done first
    relay = TcpCut(nats_server.port)
    running = None
    try:
        config = config_for(nats_server, journal.journal.path, batch=64, retry={"initial_ms": 50, "max_ms": 200})
        config = dataclasses.replace(config, url=relay.url)
        running = Running(config)
        wait_until(lambda: running.copy.stats.last_sequence > 0, 30, message="publishing under way")
        relay.hold()
        wait_until(lambda: stream_last_sequence(nats_server) > running.copy.stats.last_sequence + 64, 10,
                   message="the stream holding events whose acknowledgements are held back")
        assert running.copy._window.in_flight > 64
        relay.cut()
        wait_until(lambda: running.copy.stats.last_sequence == count, 60, message="caught up after the cut")
        wait_until(lambda: running.copy.stats.lag_records == 0, 10, message="no lag after catching up")
    finally:
        if running is not None:
            running.stop()
        relay.close()
    assert running.copy.stats.publish_errors >= 1 and running.copy.stats.connects >= 2
    assert_once_in_order(stream_messages(nats_server), journal.journal.trading_day, count)


def test_an_unreadable_record_is_counted_and_skipped(nats_server, journal):
    count = journal.order_life()                                   # 1..7
    bad_type = journal.journal.append(99, b"not a record type", time.time_ns())          # 8: unknown type
    short = journal.journal.append(RecordType.SESSION, b"\x01", time.time_ns())           # 9: too short
    corrupt = journal.journal.append(RecordType.SESSION, jr.SESSION.pack(SessionEvent.LOGOUT), time.time_ns())
    count = corrupt + journal.order_life()                         # 11..17 after the corrupt 10
    # flip a payload byte of record 10 (its CRC no longer matches: a bad record with valid ones after it)
    offset = journal.journal.found.end
    for _ in range(corrupt - 1):
        length = int.from_bytes(journal.journal._mm[offset + 4:offset + 8], "little")
        offset += (RECORD_HEADER_SIZE + length + 7) & ~7
    journal.journal._mm[offset + RECORD_HEADER_SIZE] ^= 0xFF
    running = Running(config_for(nats_server, journal.journal.path))
    try:
        wait_until(lambda: running.copy.stats.last_sequence == count, 30, message="the readable records published")
    finally:
        running.stop()
    assert running.copy.stats.unreadable == 3
    assert [m[2]["sequence"] for m in stream_messages(nats_server)] == \
        [s for s in range(1, count + 1) if s not in (bad_type, short, corrupt)]


def test_a_journal_created_after_the_start_and_a_new_trading_day_are_followed(nats_server, tmp_path):
    """No journal yet (the OMS creates it): the drop copy waits for it. A new trading day: the OMS
    archives the file and starts a new one numbered from 1; the drop copy finishes the old file
    and publishes the new one under the new day's ids."""
    path = tmp_path / "oms-journal.bin"
    running = Running(config_for(nats_server, path))
    writer = None
    try:
        wait_until(lambda: running.copy.stats.connected, 30, message="connected with no journal yet")
        writer = JournalWriter(str(path))
        first_day = writer.journal.trading_day
        count = sum(writer.order_life() for _ in range(3))
        wait_until(lambda: running.copy.stats.last_sequence == count, 30, message="the day's records published")
        writer.order_life()                                        # 22..28, then the day ends
        writer.close()
        os.replace(path, f"{path}.{first_day}")
        writer = JournalWriter(str(path), now_ns=time.time_ns() + DAY_NS)
        second_day = writer.journal.trading_day
        assert second_day != first_day
        writer.order_life()
        wait_until(lambda: running.copy.stats.last_sequence == 7 and running.copy._window.confirmed_day == second_day, 30,
                   message="the new day's records published")
    finally:
        running.stop()
        if writer is not None:
            writer.close()
    ids = [m[1] for m in stream_messages(nats_server)]
    assert ids == [f"venue1:{first_day}:{s}" for s in range(1, 29)] + [f"venue1:{second_day}:{s}" for s in range(1, 8)]


def test_a_stop_publishes_what_the_journal_holds_first(nats_server, journal):
    """``appliance down`` stops the OMS before the drop copy: its last records (the logout) are
    published before the drop copy exits, not left for the next start."""
    count = journal.order_life()
    running = Running(config_for(nats_server, journal.journal.path, batch=8))
    try:
        wait_until(lambda: running.copy.stats.last_sequence == count, 30, message="published")
        count += sum(journal.order_life() for _ in range(100))
    finally:
        running.stop()
    assert running.copy.stats.last_sequence == count
    assert len(stream_messages(nats_server)) == count


def test_a_stream_claiming_more_than_the_journal_holds_is_refused(nats_server, journal):
    """The stream is read back, not believed: a last message on our subject numbered past the
    journal's end (another publisher, a replaced journal) stops the drop copy from resuming after
    it, which would leave the journal's records out for good."""
    import asyncio as aio
    count = journal.order_life()
    day = journal.journal.trading_day

    async def forge():
        import nats
        nc = await nats.connect(nats_server.url)
        try:
            js = nc.jetstream()
            await js.add_stream(name="APPLIANCE_EVENTS", subjects=["appliance.*.events"])
            await js.publish("appliance.venue1.events", b"{}", headers={"Nats-Msg-Id": f"venue1:{day}:999"})
        finally:
            await nc.close()
    aio.run(forge())
    running = Running(config_for(nats_server, journal.journal.path, retry={"initial_ms": 50, "max_ms": 100}))
    try:
        wait_until(lambda: running.copy.stats.publish_errors >= 2, 30, message="the resume refused")
        assert running.copy.stats.connected == 0 and running.copy.stats.published == 0
        assert running.copy.stats.lag_records == count
    finally:
        running.stop()
    assert [m[1] for m in stream_messages(nats_server)] == [f"venue1:{day}:999"]


def test_an_acknowledgement_from_another_stream_is_a_refusal():
    """Without a Nats-Expected-Stream header on every event, the PubAck's stream is checked."""
    import asyncio
    from appliance.dropcopy.publisher import DropCopyError, Stats, _Window

    async def run():
        stats = Stats()
        window = _Window("APPLIANCE_EVENTS", stats, 8, (None, 0))
        assert [window.sent(1, s, 0) for s in (1, 2)] == [0, 1]
        await window.on_message(SimpleNamespace(subject="_INBOX.x.0", data=b'{"stream":"APPLIANCE_EVENTS","seq":1}'))
        assert window.refused is None and stats.published == 1 and stats.last_sequence == 1
        await window.on_message(SimpleNamespace(subject="_INBOX.x.1", data=b'{"stream":"OTHER","seq":1}'))
        assert window.refused == (2, b'{"stream":"OTHER","seq":1}') and stats.last_sequence == 1
        with pytest.raises(DropCopyError, match="record 2 refused by the stream"):
            window.check(SimpleNamespace(is_connected=True))
    asyncio.run(run())


def test_the_window_is_done_in_journal_order_whatever_order_acknowledgements_come_in():
    """Events in flight, records skipped between them, acknowledgements out of order, repeated,
    late or garbage: ``done`` and ``last_sequence`` only ever cover a prefix of the journal."""
    import asyncio
    from appliance.dropcopy.publisher import Stats, _Window

    def ack(n, seq, duplicate=False, stream="APPLIANCE_EVENTS"):
        tail = ',"duplicate":true' if duplicate else ""
        return SimpleNamespace(subject=f"_INBOX.x.{n}", data=f'{{"stream":"{stream}","seq":{seq}{tail}}}'.encode())

    async def run():
        stats = Stats()
        window = _Window("APPLIANCE_EVENTS", stats, 8, (20260102, 4))
        window.skip(20260102, 5, 500)                  # nothing in flight before it: done at once
        assert window.done == (20260102, 5) and not window.entries
        n6 = window.sent(20260102, 6, 600)
        window.skip(20260102, 7, 700)                  # unreadable, behind 6
        n8 = window.sent(20260102, 8, 800)
        n9 = window.sent(20260102, 9, 900)
        assert window.in_flight == 3 and window.oldest_ns() == 600
        await window.on_message(ack(n8, 11))           # out of order: nothing done yet
        await window.on_message(ack(n8, 11))           # repeated: ignored
        await window.on_message(ack(77, 1))            # never sent: ignored
        await window.on_message(SimpleNamespace(subject="_INBOX.x.junk", data=b"x"))
        assert window.done == (20260102, 5) and stats.last_sequence == 0 and window.in_flight == 2
        await window.on_message(ack(n6, 10, duplicate=True))
        assert window.done == (20260102, 8) and stats.last_sequence == 8 and window.oldest_ns() == 900
        await window.on_message(SimpleNamespace(subject=f"_INBOX.x.{n9}",
                                                data=b'{"stream":"APPLIANCE_EVENTS","domain":"hub","seq":12}'))
        assert window.done == (20260102, 9) and stats.last_sequence == 9 and window.oldest_ns() == 0
        assert (stats.published, stats.duplicates, window.in_flight, window.refused) == (2, 1, 0, None)
        # nats-server's own bytes (spaces and all), matched without a JSON parse
        for data, duplicate in ((b'{"stream":"APPLIANCE_EVENTS", "seq":1}', False),
                                (b'{"stream":"APPLIANCE_EVENTS", "seq":1,"duplicate": true}', True),
                                (b'{"stream":"APPLIANCE_EVENTS", "domain":"hub", "seq":7}', False)):
            assert (window._ack.fullmatch(data) is not None and window._ack.fullmatch(data).group(1) is not None) == \
                duplicate, data
            n = window.sent(20260102, 10, 1000)
            before = (stats.published, stats.duplicates)
            await window.on_message(SimpleNamespace(subject=f"_INBOX.x.{n}", data=data))
            assert (stats.published, stats.duplicates) == (before[0] + (not duplicate), before[1] + duplicate)
        assert window._ack.fullmatch(b'{"stream":"OTHER", "seq":1}') is None
    asyncio.run(run())


def test_an_event_is_the_audit_row_as_compact_json(tmp_path):
    """event_of (orjson) gives json.dumps' compact bytes (every kind of record, fills, breaks)."""
    import json
    from appliance.dropcopy.config import DropCopyConfig
    from appliance.dropcopy.publisher import event_of
    from appliance.oms.audit import AuditTrail
    from appliance.oms.journal_format import read_records
    writer = JournalWriter(str(tmp_path / "j.bin"))
    try:
        for n in range(1, 30):
            writer.order_life()
            writer.fill("AAPL" if n % 3 else "MSFT", "BST"[n % 3], n, 1_900_000 + n, broken=n % 7 == 0)
    finally:
        writer.close()
    records, _, header = read_records(str(tmp_path / "j.bin"))
    config, day = DropCopyConfig(appliance="venue1"), header["trading_day"]
    events, reference = AuditTrail(["AAPL", "MSFT"]), AuditTrail(["AAPL", "MSFT"])
    for record in records:
        row = reference.row(record)
        row.update(appliance="venue1", trading_day=day)
        assert event_of(config, events, record, day) == json.dumps(row, separators=(",", ":")).encode()


def test_event_json_reads_back_what_either_encoder_wrote_and_refuses_garbage_with_a_value_error():
    """orjson writes text that is not ASCII as UTF-8, the standard library as \\u escapes: the hub
    and ``audit --nats`` read the same values from both; what is not JSON is a ValueError (the hub
    counts and drops it)."""
    import json
    from appliance.dropcopy import event_json
    assert event_json.IMPLEMENTATION == "orjson"
    row = {"symbol": "A\ufffdPL", "detail": "caf\u00e9 \"q\" \\ \n", "time_ns": 2**63 - 1, "match_number": 2**64 - 1,
           "price": "190.0100", "shares": 0, "empty": ""}
    for data in (event_json.encode(row), json.dumps(row, separators=(",", ":")).encode()):
        assert event_json.decode(data) == row
    for garbage in (b"", b"{", b"\xff\xfe", b'{"a":NaN}', b"[" * 5000 + b"]" * 5000):
        with pytest.raises((ValueError, RecursionError)):
            event_json.decode(garbage)
