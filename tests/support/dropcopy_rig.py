"""The drop copy's test rig: a journal written by the OMS's own appender (every kind of record),
a DropCopy run on its own thread and event loop, and the stream read back."""
from __future__ import annotations

import asyncio
import json
import threading
import time

from appliance.bench.dropcopy import append_fill
from appliance.dropcopy.publisher import DropCopy
from appliance.messages.codes import Action, ControlEventKind, OmsReason
from appliance.oms import journal_records as jr
from appliance.oms.journal import Journal
from appliance.oms.journal_records import ControlKind, RecordType
from appliance.wire import ouch
from conftest import wait_until

DAY_NS = 86_400 * 10**9


class JournalWriter:
    """The OMS's own journal appender, fed one order's life at a time (every kind of record)."""

    def __init__(self, path: str, now_ns: int | None = None):
        self.journal = Journal.open(path, 4 << 20, "page_cache", now_ns=now_ns)
        self.orders = 0

    def order_life(self) -> int:
        """SENT_NEW, ACCEPTED, EXECUTED, a gate change, a kill, a local reject, SENT_CANCEL: 7 records."""
        self.orders += 1
        n, j, now = self.orders, self.journal, time.time_ns()
        token = f"0AB1{n:010d}"
        j.append(RecordType.ORDER_SENT, jr.ORDER_SENT.pack(Action.NEW, ord("B"), 0, 99998, n, 0, 42, 0, 100,
                                                           1_900_100, b"AAPL    ", token.encode()), now)
        accepted = ouch.encode_outbound({
            "type": "A", "timestamp": now % DAY_NS, "order_token": token, "buy_sell_indicator": "B",
            "shares": 100, "stock": "AAPL", "price": 1_900_100, "time_in_force": 99998, "firm": "ALGO",
            "display": "Y", "order_reference_number": n, "capacity": "A", "intermarket_sweep_eligibility": "N",
            "minimum_quantity": 0, "cross_type": "N", "order_state": "L", "bbo_weight_indicator": " "})
        j.append(RecordType.EXCHANGE_MESSAGE, jr.EXCHANGE_MESSAGE.pack(2 * n, accepted), now + 1)
        executed = ouch.encode_outbound({"type": "E", "timestamp": now % DAY_NS, "order_token": token,
                                         "executed_shares": 40, "execution_price": 1_900_000,
                                         "liquidity_flag": "A", "match_number": n})
        j.append(RecordType.EXCHANGE_MESSAGE, jr.EXCHANGE_MESSAGE.pack(2 * n + 1, executed), now + 2)
        j.append(RecordType.CONTROL, jr.CONTROL.pack(ControlKind.GATE_CHANGED, 0, 1, n), now + 3)
        j.append(RecordType.CONTROL, jr.CONTROL.pack(ControlEventKind.KILL, 3, 0, 0, b"alice", b"operator"), now + 4)
        j.append(RecordType.REJECTED_LOCALLY, jr.REJECTED_LOCALLY.pack(
            Action.NEW, ord("S"), OmsReason.GATE_CLOSED, 0, 10_000 + n, 0, 42, 1, 10, 0x7FFFFFFF, b"MSFT    "), now + 5)
        j.append(RecordType.ORDER_SENT, jr.ORDER_SENT.pack(Action.CANCEL, ord("B"), 1, 99998, 0, n, 42, 0, 0,
                                                           1_900_100, b"AAPL    ", token.encode()), now + 6)
        return 7

    def fill(self, symbol: str, side: str, shares: int, price: int, broken: bool = False) -> int:
        """A NEW order of ``shares`` at ``price`` filled whole (then its trade broken when asked):
        2 records (3), written by the benchmark's own writer. Its match number is its order number."""
        self.orders += 1
        return append_fill(self.journal, self.orders, symbol, side, shares, price, broken)

    def close(self) -> None:
        self.journal.close()


class Running:
    """A DropCopy on its own thread and event loop, stopped and joined on every path."""

    def __init__(self, config, **options):
        """``options``: DropCopy's keywords (control_socket, marks)."""
        self.copy = DropCopy(config, ["AAPL", "MSFT"], **options)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.copy._stopping is not None, 10, message="the drop copy's loop")

    def _run(self):
        try:
            asyncio.run(self.copy.run())
        except BaseException as exc:   # noqa: BLE001 - reported by stop()
            self.error = exc

    def stop(self):
        self.copy.stop()
        self.thread.join(20)
        assert not self.thread.is_alive(), "the drop copy did not stop"
        assert self.error is None, repr(self.error)


def stream_messages(server, stream: str = "APPLIANCE_EVENTS") -> list:
    """Every event of the stream: (subject, message id, event) (the marks and commands it also keeps left out)."""
    async def read():
        import nats
        nc = await nats.connect(server.url, connect_timeout=5)
        try:
            js = nc.jetstream()
            info = await js.stream_info(stream)
            out = []
            for seq in range(info.state.first_seq, info.state.last_seq + 1):
                message = await js.get_msg(stream, seq)
                if not message.subject.endswith(".events"):
                    continue
                out.append((message.subject, message.headers["Nats-Msg-Id"], json.loads(message.data)))
            return out
        finally:
            await nc.close()
    return asyncio.run(read())
