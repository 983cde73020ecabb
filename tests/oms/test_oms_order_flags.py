"""The OUCH 4.2 flags in the OMS: approved order -> journal -> OUCH bytes -> the simulated exchange's
behaviour, recovery and the audit trail reading them back (today's ORDER_SENT and the earlier shape),
and flag values the OMS refuses (BAD_ORDER)."""
from __future__ import annotations

import pytest

from appliance.messages.codes import MARKET_PRICE, TIF_IOC, Action, ExecEvent, OmsReason, Side
from appliance.oms import journal_records as jr
from appliance.oms.audit import AuditTrail
from appliance.oms.journal import Journal
from appliance.oms.journal_format import FILE_HEADER, FILE_HEADER_SIZE, read_file_header, read_records
from appliance.oms.crc32c import crc32c
from appliance.oms.journal_records import RecordType, SessionEvent
from appliance.oms.tokens import COUNTER_SIZE, PREFIX_SIZE, base36
from conftest import wait_until
from exchange_process import OrderClient, end_of_day, venue  # noqa: F401  (venue: the fixture)
from exchange_process import venue_messages
from oms_rig import SYMBOLS, Rig, journal_path, oms_layout, recover

E = ExecEvent
SIZE = 1 << 20


def token(counter: int) -> bytes:
    return base36(7, PREFIX_SIZE) + base36(counter, COUNTER_SIZE)


# ---------------------------------------------------------------- journal, recovery, audit

def sent_v2(tok: bytes, cid: int, time_in_force: int = 99998, **flags) -> bytes:
    return jr.ORDER_SENT.pack(action=Action.NEW, side=Side.SELL_SHORT, client_order_id=cid, strategy_id=1,
                              shares=300, price=1_900_000, time_in_force=time_in_force, symbol=b"AAPL    ", token=tok,
                              **flags)


def sent_v1(tok: bytes, cid: int) -> bytes:
    """An ORDER_SENT as the OMS wrote it before the flags (108 bytes)."""
    return jr.ORDER_SENT_V1.pack(action=Action.NEW, side=Side.BUY, client_order_id=cid, strategy_id=1, shares=100,
                                 price=1_900_000, time_in_force=99998, symbol=b"AAPL    ", token=tok)


def write_journal(path: str, payloads) -> None:
    journal = Journal.open(path, SIZE, "page_cache")
    try:
        journal.append(RecordType.SESSION, jr.SESSION.pack(SessionEvent.START, prefix=7, counter=1), 1_000)
        for i, payload in enumerate(payloads):
            journal.append(RecordType.ORDER_SENT, payload, 2_000 + i)
    finally:
        journal.close()


def set_records_hash(path: str, value: int) -> None:
    """Rewrite the file header's records hash (and its CRC): a journal an earlier version created."""
    with open(path, "r+b") as f:
        header = read_file_header(f.read(FILE_HEADER_SIZE))
        header["records_hash"] = value
        raw = bytearray(FILE_HEADER.pack(*[header[name] for name in FILE_HEADER.fields]))
        crc_at = FILE_HEADER.offset_of["crc"]
        raw[crc_at:crc_at + 4] = crc32c(bytes(raw[:crc_at])).to_bytes(4, "little")
        f.seek(0)
        f.write(raw)


def test_the_flags_are_journaled_recovered_and_audited(tmp_path):
    path = str(tmp_path / "journal.bin")
    write_journal(path, [sent_v2(token(1), 11, display=ord("N"), capacity=ord("P"), intermarket_sweep=ord("Y")),
                         sent_v2(token(2), 12, display=ord("Y"), capacity=ord("A"), intermarket_sweep=ord("N"),
                                 minimum_quantity=100, time_in_force=0)])
    r = recover(path)
    assert r.bad_records == 0
    assert r.orders.by_token[token(1)].flags == (b"N", b"P", b"Y", 0)
    assert r.orders.by_token[token(2)].flags == (b"Y", b"A", b"N", 100)
    assert r.orders.by_token[token(1)].side == Side.SELL_SHORT
    records, _found, _header = read_records(path)
    rows = [row for row in AuditTrail(SYMBOLS).rows(records) if row["record"] == "ORDER_SENT"]
    assert [(row["side"], row["display"], row["capacity"], row["intermarket_sweep"], row["minimum_quantity"],
             row["time_in_force"]) for row in rows] == [("T", "N", "P", "Y", 0, 99998), ("T", "Y", "A", "N", 100, 0)]


def test_a_journal_of_the_earlier_shape_is_recovered_with_the_flags_its_orders_had(tmp_path):
    """An upgrade in the middle of a day: ORDER_SENTs without flags, then today's after them."""
    path = str(tmp_path / "journal.bin")
    write_journal(path, [sent_v1(token(1), 11)])
    set_records_hash(path, min(jr.EARLIER_RECORDS_HASHES))
    journal = Journal.open(path, SIZE, "page_cache")                   # the new OMS appends today's shape
    journal.append(RecordType.ORDER_SENT, sent_v2(token(2), 12, display=ord("N"), capacity=ord("R"),
                                                  intermarket_sweep=ord("N")), 3_000)
    journal.close()
    r = recover(path)
    assert r.bad_records == 0 and r.orders_sent == 2
    assert r.orders.by_token[token(1)].flags == (b"Y", b"A", b"N", 0)
    assert r.orders.by_token[token(1)].client_order_id == 11 and r.orders.by_token[token(1)].shares == 100
    assert r.orders.by_token[token(2)].flags == (b"N", b"R", b"N", 0)
    records, _found, _header = read_records(path)
    rows = [row for row in AuditTrail(SYMBOLS).rows(records) if row["record"] == "ORDER_SENT"]
    assert [(row["event"], row["client_order_id"], row["display"]) for row in rows] == [
        ("SENT_NEW", 11, "Y"), ("SENT_NEW", 12, "N")]


# ---------------------------------------------------------------- the OMS process against the exchange process

@pytest.fixture
def rig(venue, write_layout, unique_name, tmp_path, spawner):
    rig = Rig(write_layout(oms_layout(unique_name, venue.order_entry[1], journal_path(tmp_path))))
    try:
        rig.start(spawner)
        rig.wait_ready()
        yield rig
    finally:
        spawner.cleanup()
        rig.close()


def next_answer(client: OrderClient) -> dict:
    while (message := client.next_message())["type"] == "S":
        pass
    return message


def test_every_flag_goes_out_in_the_ouch_bytes_and_the_exchange_honours_it(venue, rig):
    other = OrderClient(venue.order_entry, "ALGO2", "secret2")
    try:
        other.enter("B1", "B", 300, "AAPL", 1_900_000)
        assert next_answer(other)["type"] == "A"
        # a hidden short sale, principal, ISO, resting above the bid
        rig.new(1, "AAPL", "T", 100, 1_910_000, display=ord("N"), capacity=ord("P"), intermarket_sweep=1)
        # an IOC sell with a minimum of 400 against a bid of 300: nothing trades, canceled whole
        rig.new(2, "AAPL", "S", 500, 1_900_000, tif=TIF_IOC, minimum_quantity=400)
        # an IOC short sale with a minimum it can meet: 200 of 300 bid
        rig.new(3, "AAPL", "T", 200, 1_900_000, tif=TIF_IOC, minimum_quantity=200, capacity=ord("R"))
        wait_until(lambda: E.ACCEPTED in rig.events(1) and E.CANCELED in rig.events(2)
                   and E.EXECUTED in rig.events(3), 10, message="the three orders answered")
        assert rig.events(2) == [E.ACCEPTED, E.CANCELED]
        assert rig.position("AAPL").position == -200                     # the short sale is a sale
        # replace the hidden order: displayed now, the ISO flag off; side and capacity kept
        rig.replace(4, orig=1, shares=100, price=1_920_000, side="T", display=ord("Y"))
        wait_until(lambda: E.ACCEPTED in rig.events(4) or E.REPLACED in rig.events(4), 10,
                   message="the replacement accepted")
        # flag values the OMS refuses before the wire
        rig.new(5, "AAPL", "B", 100, 1_800_000, display=ord("P"))
        rig.new(6, "AAPL", "B", 100, 1_800_000, minimum_quantity=50)             # a minimum on a day order
        wait_until(lambda: E.REJECTED_LOCALLY in rig.events(5) and E.REJECTED_LOCALLY in rig.events(6), 10,
                   message="refused by the OMS")
        assert [r["reason"] for r in rig.reports_of(5) + rig.reports_of(6)] == [OmsReason.BAD_ORDER] * 2
        # a market order goes out at MARKET_PRICE
        rig.new(7, "AAPL", "B", 100, MARKET_PRICE, tif=TIF_IOC)
        wait_until(lambda: E.CANCELED in rig.events(7) or E.EXECUTED in rig.events(7), 10, message="market order")
    finally:
        other.close()
    end_of_day(venue)
    inbound, outbound = venue_messages(venue)
    enters = [m for m in inbound if m["type"] == "O"]
    assert [(m["buy_sell_indicator"], m["display"], m["capacity"], m["intermarket_sweep_eligibility"],
             m["minimum_quantity"], m["time_in_force"]) for m in enters] == [
        ("T", "N", "P", "Y", 0, 99998), ("S", "Y", "A", "N", 400, 0), ("T", "Y", "R", "N", 200, 0),
        ("B", "Y", "A", "N", 0, 0)]
    assert enters[-1]["price"] == MARKET_PRICE
    (replace,) = [m for m in inbound if m["type"] == "U"]
    assert (replace["display"], replace["intermarket_sweep_eligibility"], replace["minimum_quantity"]) == ("Y", "N", 0)
    accepted = {m["order_token"]: m for m in outbound if m["type"] == "A"}
    assert [(a["display"], a["capacity"]) for a in accepted.values()][:3] == [("N", "P"), ("Y", "A"), ("Y", "R")]
    replaced = [m for m in outbound if m["type"] == "U"]
    assert replaced and replaced[0]["capacity"] == "P" and replaced[0]["buy_sell_indicator"] == "T"
    # the journal holds what was sent, for recovery and the audit
    records, _found, _header = read_records(rig.layout.processes["oms"].params["journal"])
    sent = [jr.parse_order_sent(r.payload) for r in records if r.type == RecordType.ORDER_SENT]
    news = [(s.client_order_id, chr(s.display), chr(s.capacity), chr(s.intermarket_sweep), s.minimum_quantity)
            for s in sent if s.action == Action.NEW]
    assert news == [(1, "N", "P", "Y", 0), (2, "Y", "A", "N", 400), (3, "Y", "R", "N", 200), (7, "Y", "A", "N", 0)]
    (replaced_sent,) = [s for s in sent if s.action == Action.REPLACE]
    assert (chr(replaced_sent.display), chr(replaced_sent.capacity), chr(replaced_sent.intermarket_sweep)) == \
        ("Y", "P", "N")
