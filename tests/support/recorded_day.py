"""A small recorded ITCH day written as a BinaryFILE, for the replay exchange's and the parity tests."""
from __future__ import annotations

from appliance.wire import itch
from appliance.wire.dayfile import DayFileWriter
from itch_raw import add, directory, raw

MS = 1_000_000
OPEN_NS = 34_200 * 1_000_000_000          # 09:30:00
P = 1_000_000                              # $100.00


def write_day(path, messages) -> list[bytes]:
    """Write raw tuples as a BinaryFILE; returns each message's bytes (what a replay must publish)."""
    out = []
    with DayFileWriter(path) as writer:
        for message in messages:
            layout = itch.LAYOUT_BY_BYTE[message[0][0]]
            buffer = bytearray(layout.size)
            layout.pack_into(buffer, 0, *message)
            writer.write_message(bytes(buffer))
            out.append(bytes(buffer))
    return out


def system(code: str, ts: int):
    return raw("S", 0, ts, event_code=code)


def execute(locate: int, ref: int, shares: int, ts: int):
    return raw("E", locate, ts, order_reference_number=ref, executed_shares=shares, match_number=ref * 1000 + ts % 1000)


def quiet_day(symbol: str = "AAPL", locate: int = 5, step_ns: int = 10 * MS) -> list:
    """A day of one symbol: a two-sided book, then executions at the bid and new levels, one message
    per ``step_ns`` (every message its own timestamp)."""
    t = OPEN_NS
    messages = [system("O", t), directory(symbol, locate, ts=t), system("Q", t)]
    body = [
        add(locate, 1, "B", 300, symbol, P, ts=0),
        add(locate, 2, "S", 200, symbol, P + 100, ts=0),
        add(locate, 3, "B", 100, symbol, P - 100, ts=0),
        execute(locate, 1, 200, 0),
        add(locate, 4, "S", 100, symbol, P + 200, ts=0),
        execute(locate, 1, 100, 0),
        add(locate, 5, "S", 100, symbol, P + 100, ts=0),
        raw("X", locate, 0, order_reference_number=2, canceled_shares=50),
        add(locate, 6, "B", 200, symbol, P, ts=0),
        raw("D", locate, 0, order_reference_number=4),
    ]
    for message in body:
        t += step_ns
        messages.append(message[:3] + (t,) + message[4:])
    t += step_ns
    messages += [system("M", t), system("E", t), system("C", t)]
    return messages
