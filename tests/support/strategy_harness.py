"""The strategy tests' harness: a layout with the strategy's rings, and the host between rings the
test owns (it plays the feed, risk and the OMS), driven the way the agent drives it."""
from __future__ import annotations

from appliance.messages.catalog import BOOK_UPDATE, EXECUTION_REPORT, ORDER_INTENT, ORDER_REJECT, RISK_SNAPSHOT
from appliance.messages.codes import ALL_SYMBOLS, RejectSource, Side, SnapshotKind
from appliance.runtime.memory import SharedMemory
from appliance.strategy.fees import NO_FEES
from appliance.strategy.host import StrategyHost, drain
from appliance.strategy.intents import IntentWriter
from conftest import layout_document

SYMBOLS = ["AAPL", "MSFT", "SPY"]


def instruments(tick: str = "0.01", round_lot: int = 100):
    """The harness symbols' instruments, each with this tick (dollars) and round lot."""
    from appliance.config.instruments import parse_instruments
    return parse_instruments("version: 1\ninstruments:\n" + "".join(
        f"  - {{symbol: {symbol}, tick: {tick}, round_lot: {round_lot}}}\n" for symbol in SYMBOLS), "harness.yaml")
STRATEGY_ID = 7


def strategy_layout(name: str, intent_capacity: int = 64) -> dict:
    def proc(n):
        return {"name": n, "agent": f"nowhere:{n}", "idle": {"strategy": "sleep"}}

    def ring(n, producer, consumer, message, slot, capacity=64):
        return {"name": n, "segment": "main", "producer": producer, "consumer": consumer, "message": message,
                "slot_size": slot, "capacity": capacity}
    doc = layout_document(name, processes=[proc("feed"), proc("strategy"), proc("risk"), proc("oms")],
                          rings=[ring("book_updates", "feed", "strategy", "BookUpdate", 192),
                                 ring("order_intents", "strategy", "risk", "OrderIntent", 128, intent_capacity),
                                 ring("risk_rejects", "risk", "strategy", "OrderReject", 64),
                                 ring("exec_to_strategy", "oms", "strategy", "ExecutionReport", 128)],
                          symbols=SYMBOLS)
    doc["tables"] += [{"name": "control", "kind": "control", "segment": "main"},
                      {"name": "positions", "kind": "positions", "segment": "main"}]
    return doc


class Harness:
    """The host between test-owned rings: write records in, step, read intents out."""

    def __init__(self, memory: SharedMemory, strategy_class, parameters=None, *, traded=None, max_pending=64,
                 instruments=None, fees=NO_FEES, **host_options):
        self.memory = memory
        self.buffer = memory.buffer_of("main")
        self.feed = memory.ring("book_updates", "producer")
        self.risk_out = memory.ring("risk_rejects", "producer")
        self.oms = memory.ring("exec_to_strategy", "producer")
        self.risk_in = memory.ring("order_intents", "consumer")
        self.inputs = [(memory.ring("exec_to_strategy", "consumer"), "handle_exec_record"),
                       (memory.ring("risk_rejects", "consumer"), "handle_order_reject")]
        self.books_in = memory.ring("book_updates", "consumer")
        self.writer = IntentWriter(memory.ring("order_intents", "producer"), self.buffer, STRATEGY_ID, max_pending)
        self.failed_calls = 0
        self.prints = {}            # symbol id -> (last trade, trade sequence) the harness's feed sent last
        self.host = StrategyHost(strategy_class, parameters, symbols=tuple(SYMBOLS), traded=traded,
                                 strategy_id=STRATEGY_ID, intents=self.writer, on_failed=self._failed,
                                 instruments=instruments, fees=fees, **host_options)
        self.host.start()

    def _failed(self):
        self.failed_calls += 1

    @property
    def strategy(self):
        return self.host.strategy

    def step(self) -> int:
        n = self.writer.flush() if self.writer.pending else 0
        for ring, handler in self.inputs:
            n += drain(ring, self.buffer, getattr(self.host, handler), 1000)
        n += self.host.drain_book_updates(self.books_in, self.buffer, 1000)
        return n

    def book(self, symbol, bids=(), asks=(), *, flags=0, state=b"T", last=(0, 0), seq=1, t_rx=1111, t_feed=2222,
             symbol_id=None, type_id=None, step=True, trade_seq=None, aggressor=0, t_trade=0):
        """One BookUpdate. ``bids``/``asks``: (price, shares) or (price, shares, orders). ``trade_seq`` None:
        the harness numbers prints as the feed does, a ``last`` different from the one it sent before being
        a new print; give it to send the same print twice or a gap."""
        sid = SYMBOLS.index(symbol) if symbol_id is None else symbol_id
        fields = {"symbol_id": sid, "flags": flags, "trading_state": state[0], "bid_levels": len(bids),
                  "ask_levels": len(asks), "last_trade_price": last[0], "last_trade_shares": last[1],
                  "update_sequence": seq, "mold_sequence": seq, "t_exchange_ns": 5, "t_rx_ns": t_rx,
                  "t_feed_out_ns": t_feed, "message_count": 1, "last_trade_aggressor": aggressor,
                  "last_trade_t_exchange_ns": t_trade}
        for name, side in (("bid", bids), ("ask", asks)):
            for i, level in enumerate(side):
                fields[f"{name}_price_{i}"], fields[f"{name}_shares_{i}"] = level[0], level[1]
                fields[f"{name}_orders_{i}"] = level[2] if len(level) > 2 else 0
        sent_last, sent_seq = self.prints.get(sid, ((0, 0), 0))
        if trade_seq is None:
            trade_seq = sent_seq + 1 if tuple(last) != (0, 0) and tuple(last) != sent_last else sent_seq
        self.prints[sid] = (tuple(last), trade_seq)
        fields["trade_sequence"] = trade_seq
        offset = self.feed.claim()
        assert offset >= 0
        BOOK_UPDATE.pack_into(self.buffer, offset, *BOOK_UPDATE.body(**fields))
        if type_id is not None:
            self.buffer[offset:offset + 2] = type_id.to_bytes(2, "little")
        self.feed.commit()
        if step:
            self.step()

    def report(self, event, client_order_id, symbol="AAPL", *, orig=0, side=Side.BUY, shares=0, price=0, leaves=0,
               position=0, reason=0, source=0, strategy_id=STRATEGY_ID, symbol_id=None, match=0, liquidity=0,
               cost=None, realized=0, t_exchange_ns=1, t_rx_ns=2):
        sid = SYMBOLS.index(symbol) if symbol_id is None else symbol_id
        offset = self.oms.claim()
        EXECUTION_REPORT.pack_into(self.buffer, offset, client_order_id, orig, 0, match, strategy_id, sid, event, side,
                                   reason, source, shares, price, leaves, position,
                                   position * price if cost is None else cost, realized, t_exchange_ns, t_rx_ns,
                                   ord(liquidity) if isinstance(liquidity, str) else liquidity)
        self.oms.commit()
        self.step()

    def snapshot(self, kind, client_order_id=0, symbol="AAPL", *, orig=0, side=0, leaves=0, price=0, position=0,
                 strategy_id=STRATEGY_ID, step=True):
        """One RiskSnapshot record on exec_to_strategy (the OMS answering a strategy's Action.SNAPSHOT);
        END takes the request's id as ``client_order_id``."""
        sid = ALL_SYMBOLS if kind == SnapshotKind.END else SYMBOLS.index(symbol)
        offset = self.oms.claim()
        RISK_SNAPSHOT.pack_into(self.buffer, offset, client_order_id, orig, strategy_id, sid, int(kind), int(side), 0,
                                leaves, price, position, position * price, 0, 1)
        self.oms.commit()
        if step:
            self.step()

    def risk_reject(self, client_order_id, reason, symbol="AAPL", strategy_id=STRATEGY_ID):
        offset = self.risk_out.claim()
        ORDER_REJECT.pack_into(self.buffer, offset, client_order_id, strategy_id, SYMBOLS.index(symbol),
                               RejectSource.RISK, reason, 3)
        self.risk_out.commit()
        self.step()

    def intents(self) -> list[dict]:
        self.step()
        out = []
        while (offset := self.risk_in.peek()) >= 0:
            out.append(ORDER_INTENT.as_dict(self.buffer, offset))
            self.risk_in.release()
        return out
