"""``bench hops`` feed: one MoldUDP64 datagram (one message, or 20 over 5 symbols) from the driver's
``sendto`` and from the kernel receive to the BookUpdate committed; the pure-Python decode as the peer."""
from __future__ import annotations

import shutil
import time
from array import array

from appliance.bench.hops_rig import SYMBOLS, TICK, MeasuredAgent, pinned, scratch_directory, spin_peek, summary


# ---------------------------------------------------------------------------
# feed: MoldUDP64 datagram -> BookUpdate
# ---------------------------------------------------------------------------

SESSION = "HOPS000001"
BASE_BID, BASE_ASK = 1_000_000, 1_001_000          # $100.00 / $100.10 on every symbol


class ItchDay:
    """The driver's exchange: ITCH messages in MoldUDP64 datagrams with consecutive sequence numbers."""

    def __init__(self) -> None:
        self.sequence = 1
        self.reference = 0

    def packet(self, messages: list[dict]) -> bytes:
        from appliance.wire import itch, moldudp64
        encoded = [itch.encode({"tracking_number": 0, "timestamp": 34_200_000_000_000, **m}) for m in messages]
        packets = moldudp64.pack_messages(SESSION, self.sequence, encoded)
        if len(packets) != 1:
            raise RuntimeError("the bench's messages do not fit one datagram")
        self.sequence += len(messages)
        return packets[0]

    def add(self, locate: int, buy: bool, price: int) -> tuple[dict, int]:
        self.reference += 1
        return {"type": "A", "stock_locate": locate, "order_reference_number": self.reference,
                "buy_sell_indicator": "B" if buy else "S", "shares": 100, "stock": SYMBOLS[locate - 1],
                "price": price}, self.reference

    @staticmethod
    def delete(locate: int, reference: int) -> dict:
        return {"type": "D", "stock_locate": locate, "order_reference_number": reference}


def feed_cases(day: ItchDay, total: int):
    """The two cases' datagrams, each with the symbol id and the (bid, ask) its last BookUpdate must show:
    ``single``: an Add improving symbol 0's bid, then its Delete; ``packet20``: 20 Adds over the 5
    symbols (bid +1, ask -1, bid +2, ask -2 ticks each, interleaved), then the 20 Deletes."""
    single, packet20 = [], []
    for i in range(total):
        if i % 2 == 0:
            message, reference = day.add(1, True, BASE_BID + TICK)
            single.append((day.packet([message]), 0, BASE_BID + TICK, BASE_ASK))
        else:
            single.append((day.packet([day.delete(1, reference)]), 0, BASE_BID, BASE_ASK))
    for i in range(total):
        if i % 2 == 0:
            adds, references = [], []
            for buy, ticks in ((True, 1), (False, 1), (True, 2), (False, 2)):
                for locate in range(1, len(SYMBOLS) + 1):
                    message, reference = day.add(locate, buy, BASE_BID + ticks * TICK if buy else BASE_ASK - ticks * TICK)
                    adds.append(message)
                    references.append((locate, reference))
            packet20.append((day.packet(adds), len(SYMBOLS) - 1, BASE_BID + 2 * TICK, BASE_ASK - 2 * TICK))
        else:
            packet20.append((day.packet([day.delete(locate, ref) for locate, ref in references]), len(SYMBOLS) - 1,
                             BASE_BID, BASE_ASK))
    return single, packet20


def decode_peers(single, packet20, warmup: int) -> dict:
    """The feed's decode step, compiled and its pure-Python reference, in this process on the same
    datagrams: ``FeedPacketScanner(use_c=...)`` walking each datagram's subscribed messages, each
    datagram timed alone (the timer's own cost subtracted)."""
    from appliance.bench.timing import timer_overhead_ns
    from appliance.wire.moldudp64 import FeedPacketScanner

    overhead = timer_overhead_ns(50_000)
    subscribed = bytearray(65536)
    for locate in range(1, len(SYMBOLS) + 1):
        subscribed[locate] = 1
    out = {}
    for case, datagrams in (("single", single), ("packet20", packet20)):
        for use_c in (True, False):
            scanner = FeedPacketScanner(subscribed, use_c=use_c)
            scan = scanner.scan
            latencies = array("q", bytes(8 * len(datagrams)))

            def walk() -> None:
                pc = time.perf_counter_ns
                for i, (datagram, *_rest) in enumerate(datagrams):
                    t0 = pc()
                    for _raw in scan(datagram, len(datagram)):
                        pass
                    latencies[i] = pc() - t0 - overhead
            from appliance.bench.timing import gc_paused
            gc_paused(walk)
            out[f"decode_{case}_{'c' if use_c else 'python'}"] = summary(latencies[warmup:])
    return out


def measure_feed(args, driver_cpu: int, agent_cpu: int) -> dict:
    """The feed agent as it runs (its compiled books when built), then with ``compiled_books: false`` (the
    Python books and outputs, the reference) as the peer, on the same datagrams."""
    ours = _measure_agent(args, driver_cpu, agent_cpu, {})
    result = {**summary(ours["single_rx"]), "warmup": args.warmup, "label": "rx->BookUpdate, 1 msg",
              "from_sendto": summary(ours["single_send"]),
              "packet20": {"from_rx": summary(ours["packet_rx"]), "from_sendto": summary(ours["packet_send"])},
              "cases": {"sendto -> BookUpdate, 1 msg": summary(ours["single_send"]),
                        "rx -> last BookUpdate, 20 msgs/5 sym": summary(ours["packet_rx"]),
                        "sendto -> last BookUpdate, 20/5": summary(ours["packet_send"])},
              "gaps": ours["gaps"], "book_updates": ours["book_updates"], "books": ours["books"],
              "what": "kernel receive (t_rx_ns) -> BookUpdate committed (t_feed_out_ns), one MoldUDP64 "
                      "datagram with one top-changing ITCH message; also from the driver's sendto, and the "
                      "20-messages-over-5-symbols datagram to its last symbol's BookUpdate"}
    peers = ours["decode_peers"]
    if ours["books"] == "compiled":
        python = _measure_agent(args, driver_cpu, agent_cpu, {"compiled_books": False}, decode=False)
        peers["agent_python_books"] = {"single_rx": summary(python["single_rx"]),
                                       "packet20_rx": summary(python["packet_rx"]), "books": python["books"]}
    result["peers"] = peers
    return result


def _measure_agent(args, driver_cpu: int, agent_cpu: int, extra_params: dict, decode: bool = True) -> dict:
    import socket

    from appliance.messages.catalog import BOOK_UPDATE
    from appliance.sim.ports import free_ports

    workdir = scratch_directory("feed")
    agent = sender = None
    try:
        listen_port, source_port, rerequest_port = free_ports(3)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.bind(("127.0.0.1", source_port))
        params = {"listen": {"host": "127.0.0.1", "port": listen_port},
                  "source": {"host": "127.0.0.1", "port": source_port},
                  "rerequest": {"host": "127.0.0.1", "port": rerequest_port}, "session": SESSION,
                  "stale_after_ms": 3_600_000, **extra_params}
        agent = MeasuredAgent("feed", params, agent_cpu, args.timeout, workdir)
        memory = agent.memory
        books = memory.ring("book_updates", "consumer")
        buffer = memory.ring_buffer("book_updates")
        fields = BOOK_UPDATE.fields_struct(["symbol_id", "bid_price_0", "ask_price_0", "t_rx_ns", "t_feed_out_ns"])
        read = fields.unpack_from
        destination = ("127.0.0.1", listen_port)
        day = ItchDay()
        opening = [{"type": "R", "stock_locate": locate, "stock": symbol, "market_category": "Q",
                    "financial_status_indicator": "N", "round_lot_size": 100, "round_lots_only": "N",
                    "issue_classification": "C", "issue_sub_type": "Z", "authenticity": "P",
                    "short_sale_threshold_indicator": "N", "ipo_flag": "N", "luld_reference_price_tier": "1",
                    "etp_flag": "N", "etp_leverage_factor": 0, "inverse_indicator": "N"}
                   for locate, symbol in enumerate(SYMBOLS, 1)]
        opening += [{"type": "H", "stock_locate": locate, "stock": symbol, "trading_state": "T", "reserved": " ",
                     "reason": ""} for locate, symbol in enumerate(SYMBOLS, 1)]
        book = []
        for locate in range(1, len(SYMBOLS) + 1):
            book += [day.add(locate, True, BASE_BID)[0], day.add(locate, False, BASE_ASK)[0]]
        total = args.warmup + args.samples
        first = day.packet(opening)
        second = day.packet(book)
        single, packet20 = feed_cases(day, total)
        sender.sendto(first, destination)
        sender.sendto(second, destination)
        while True:                                   # the opening book, every symbol two-sided
            offset = spin_peek(books, agent, args.timeout)
            symbol, bid, ask, _rx, _out = read(buffer, offset)
            books.release()
            if symbol == len(SYMBOLS) - 1 and bid == BASE_BID and ask == BASE_ASK:
                break

        def run_case(datagrams) -> tuple[array, array]:
            from_send = array("q", bytes(8 * total))
            from_rx = array("q", bytes(8 * total))

            def drive() -> None:
                tns = time.time_ns
                sendto = sender.sendto
                for i, (datagram, symbol, bid, ask) in enumerate(datagrams):
                    t_send = tns()
                    sendto(datagram, destination)
                    while True:
                        offset = spin_peek(books, agent, args.timeout)
                        got = read(buffer, offset)
                        books.release()
                        if got[0] == symbol and got[1] == bid and got[2] == ask and got[3]:
                            from_send[i] = got[4] - t_send
                            from_rx[i] = got[4] - got[3]
                            break
            pinned(driver_cpu, drive)
            return from_send[args.warmup:], from_rx[args.warmup:]

        single_send, single_rx = run_case(single)
        packet_send, packet_rx = run_case(packet20)
        counters = memory.counters_reader().by_label()
        result = {"single_send": single_send, "single_rx": single_rx, "packet_send": packet_send,
                  "packet_rx": packet_rx, "gaps": counters.get("feed.gaps", 0),
                  "book_updates": counters.get("feed.book_updates", 0),
                  "books": "compiled" if "books compiled" in agent.log_tail(200) else "python",
                  "decode_peers": decode_peers(single, packet20, args.warmup) if decode else {}}
        if result["gaps"]:
            raise RuntimeError(f"the feed saw {result['gaps']} gaps in the bench's own sequence")
        return result
    finally:
        if agent is not None:
            agent.stop()
            agent.close()
        if sender is not None:
            sender.close()
        shutil.rmtree(workdir, ignore_errors=True)
