"""``bench hops`` strategy: BookUpdate committed to the first OrderIntent committed, the reference
market maker requoting."""
from __future__ import annotations

import shutil
import time
from array import array

from appliance.bench.hops_rig import TICK, MeasuredAgent, pinned, scratch_directory, spin_peek, summary


# ---------------------------------------------------------------------------
# strategy: BookUpdate -> OrderIntent
# ---------------------------------------------------------------------------

# The reference market maker, one symbol quoted 10 ticks wide: a 2-tick move of the mid (more than
# its 1-tick requote threshold, less than half its width, so no side waits for the other) replaces both.
MARKET_MAKER_PARAMETERS = {"tick": TICK, "spread_ticks": 10, "size": 100, "lot": 100, "max_position": 1000,
                           "requote_threshold_ticks": 1, "fair_value": "mid"}


def measure_strategy(args, driver_cpu: int, agent_cpu: int, compiled_step: bool = True) -> dict:
    """``compiled_step`` False: the market maker quotes with desired_quotes, the Python reference of its
    compiled step (strategy/_quote_fast.c): the hop's peer."""
    import struct

    from appliance.messages.catalog import BOOK_UPDATE, EXECUTION_REPORT, ORDER_INTENT, RISK_SNAPSHOT
    from appliance.messages.schema import HEADER_COUNT
    from appliance.messages.codes import ALL_SYMBOLS, Action, ExecEvent, SnapshotKind

    workdir = scratch_directory("strategy")
    agent = None
    try:
        params = {"strategy": "appliance.strategy.market_maker:MarketMaker", "strategy_id": 1,
                  "parameters": {**MARKET_MAKER_PARAMETERS, "compiled_step": compiled_step},
                  "timer_interval_ms": 3_600_000}
        agent = MeasuredAgent("strategy", params, agent_cpu, args.timeout, workdir)
        memory = agent.memory
        control = memory.control("*")
        control.set("feed_ready", 1)
        control.write_gate(0)
        books = memory.ring("book_updates", "producer")
        books_buffer = memory.ring_buffer("book_updates")
        intents = memory.ring("order_intents", "consumer")
        intents_buffer = memory.ring_buffer("order_intents")
        reports = memory.ring("exec_to_strategy", "producer")
        reports_buffer = memory.ring_buffer("exec_to_strategy")
        read_intent = ORDER_INTENT.read
        pack_book, pack_report = BOOK_UPDATE.pack_into, EXECUTION_REPORT.pack_into
        new, replace, cancel = int(Action.NEW), int(Action.REPLACE), int(Action.CANCEL)
        accepted, replaced, canceled = int(ExecEvent.ACCEPTED), int(ExecEvent.REPLACED), int(ExecEvent.CANCELED)
        total = args.warmup + args.samples
        latencies = array("q", bytes(8 * total))
        base = 1_900_000
        # one top level a side and a last trade; the fields set per sample found by name once
        template = BOOK_UPDATE.body(trading_state=ord("T"), bid_levels=1, ask_levels=1, bid_shares_0=500,
                                    ask_shares_0=500, last_trade_shares=100, message_count=1)
        BID, ASK, LAST, SEQUENCE, MOLD, T_EXCHANGE, T_RX, T_FEED_OUT = (
            BOOK_UPDATE.index_of[name] - HEADER_COUNT for name in (
                "bid_price_0", "ask_price_0", "last_trade_price", "update_sequence", "mold_sequence",
                "t_exchange_ns", "t_rx_ns", "t_feed_out_ns"))
        counts = {"intents": 0, "stray_intents": 0, "updates_without_second_intent": 0}
        second_wait_s = min(args.timeout, 0.05)
        u64 = struct.Struct("<Q").unpack_from
        t_out_at = ORDER_INTENT.offset_of["t_strategy_out_ns"]
        t_in_at = ORDER_INTENT.offset_of["t_feed_out_ns"]

        def acknowledge(intent) -> None:
            """The OMS's answer to an intent, as the venue accepted it."""
            event = {new: accepted, replace: replaced, cancel: canceled}.get(intent.action)
            if event is None:
                return
            shares = 0 if event == canceled else intent.shares
            offset = reports.claim()
            pack_report(reports_buffer, offset, *EXECUTION_REPORT.body(
                client_order_id=intent.client_order_id, orig_client_order_id=intent.orig_client_order_id,
                strategy_id=intent.strategy_id, symbol_id=intent.symbol_id, event=event, side=intent.side,
                shares=intent.shares, price=intent.price, leaves_shares=shares, t_oms_rx_ns=time.time_ns()))
            reports.commit()

        def start_up() -> None:
            """The strategy's start: its CANCEL_ALL and snapshot request, answered as the OMS would (nothing
            open), so on_start runs before the first measured update."""
            while True:
                intent = read_intent(intents_buffer, spin_peek(intents, agent, args.timeout))
                intents.release()
                if intent.action == Action.SNAPSHOT:
                    break
            offset = reports.claim()
            RISK_SNAPSHOT.pack_into(reports_buffer, offset, *RISK_SNAPSHOT.body(
                client_order_id=intent.client_order_id, strategy_id=intent.strategy_id, symbol_id=ALL_SYMBOLS,
                kind=SnapshotKind.END))
            reports.commit()
            deadline = time.monotonic() + args.timeout
            while control.get("strategy_ready") != 1:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the strategy agent was not ready {args.timeout} s after its snapshot")
                time.sleep(0.001)

        def drive() -> None:
            start_up()
            tns = time.time_ns
            for i in range(total):
                mid = base + (2 * TICK if i & 1 else 0)
                offset = books.claim()
                t_feed_out = tns()
                book = template.copy()
                book[BID], book[ASK], book[LAST], book[SEQUENCE], book[MOLD] = mid - TICK, mid + TICK, mid, i + 1, i + 1
                book[T_EXCHANGE], book[T_RX], book[T_FEED_OUT] = t_feed_out - 2_000, t_feed_out - 1_000, t_feed_out
                pack_book(books_buffer, offset, *book)
                books.commit()
                seen = []
                first = True
                while len(seen) < 2:
                    if first:
                        offset = spin_peek(intents, agent, args.timeout)
                    else:                     # the other side's replace, usually in the same duty cycle
                        deadline = time.monotonic() + second_wait_s
                        while (offset := intents.peek()) < 0 and time.monotonic() < deadline:
                            pass
                        if offset < 0:
                            counts["updates_without_second_intent"] += 1
                            break
                    if u64(intents_buffer, offset + t_in_at)[0] != t_feed_out:
                        counts["stray_intents"] += 1
                    elif first:
                        latencies[i] = u64(intents_buffer, offset + t_out_at)[0] - t_feed_out
                        first = False
                    seen.append(read_intent(intents_buffer, offset))
                    intents.release()
                counts["intents"] += len(seen)
                for intent in seen:
                    acknowledge(intent)
                while reports.depth():        # the strategy has read every acknowledgement
                    pass
        pinned(driver_cpu, drive)
        from appliance.strategy.market_maker import QuoteParams, compiled_quote_step
        built = compiled_quote_step(QuoteParams()) is not None        # the agent runs the same build
        return {**summary(latencies[args.warmup:]), "warmup": args.warmup, **counts, "label": "BookUpdate->intent",
                "quote": "compiled" if compiled_step and built else "python",
                "what": "BookUpdate committed -> first OrderIntent committed, the reference market maker "
                        "replacing its bid and ask"}
    finally:
        if agent is not None:
            agent.stop()
            agent.close()
        shutil.rmtree(workdir, ignore_errors=True)
