"""The feed part of ``appliance bench exchange``: the exchange as a process under a background flow.

The whole exchange as a process (``appliance exchange``) at a few background
rates (``--rates``, default 10k, 50k and 200k operations/s asked): the bench binds a UDP
socket first, starts the exchange sending its MoldUDP64 feed there, waits for its
``exchange ready`` line, logs in as ``ALGO1`` over SoupBinTCP and sends a steady stream
of Enter Order / Cancel Order pairs in AAPL (``--order-rate`` messages/s, far from the
touch) for ``--seconds`` while receiving the feed. Reported per rate: MoldUDP64 messages
received per second in the window, of which the background's (received minus the ITCH
messages our own orders caused, counted from their OUCH answers), sequence gaps and the
messages missing in them, OUCH messages received, and the background operations per
second the exchange says it ran (its control socket's ``status``, when it answers). The
exchange is ended with SIGTERM and must exit 0; the process, sockets and temporary
directory are cleaned up on every path.

The ``appliance exchange`` arguments, the MoldUDP64 counter and the ``status`` readers here are
also what the feed and OMS benchmarks start and read their exchange with.
"""
from __future__ import annotations

import argparse
import os
import time

from appliance.command_io.arguments import bounded

DEFAULT_RATES = (10_000, 50_000, 200_000)
FEED_SYMBOL = "AAPL"
FEED_FIRM, FEED_PASSWORD = "ALGO1", "secret1"
FEED_PRICE = 1_000_000           # far below the default AAPL reference (1,900,000): our orders rest, never trade
MAX_BACKGROUND_RATE = 200_000        # the exchange's --background-rate limit

_rate = bounded(float, 1, MAX_BACKGROUND_RATE, " operations/s")


def background_rates(text: str) -> tuple[float, ...]:
    """``--rates RATE[,RATE...]``: background operations/s asked of the exchange, one run each."""
    values = tuple(_rate(part.strip()) for part in text.split(",") if part.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} names no rate")
    return values


def exchange_args(feed_port: int, control: str, rate: float, rerequest_port: int = 0, source_port: int = 0) -> list[str]:
    """``appliance exchange`` arguments for a benchmark: every port free (0) unless given, the feed
    sent to ``127.0.0.1:feed_port``, background flow at ``rate``, no linger."""
    return ["--order-port", "0", "--rerequest-port", str(rerequest_port), "--source-port", str(source_port),
            "--snapshot-port", "0", "--feed", f"127.0.0.1:{feed_port}", "--control", control,
            "--background-rate", f"{rate:g}", "--linger", "0"]


class FeedCounter:
    """Counts MoldUDP64 packets: messages, heartbeats, end of session, gaps (by sequence number)."""

    def __init__(self) -> None:
        from appliance.wire import moldudp64
        self._header = moldudp64.HEADER.struct.unpack_from
        self._header_size = moldudp64.HEADER_SIZE
        self._end_of_session = moldudp64.END_OF_SESSION_COUNT
        self._heartbeat = moldudp64.HEARTBEAT_COUNT
        self.next_sequence = 0        # 0: nothing seen yet
        self.packets = self.messages = self.heartbeats = 0
        self.gaps = self.missing = self.late = 0
        self.window_messages = self.window_packets = 0
        self.ended = False

    def packet(self, buffer, nbytes: int, in_window: bool) -> None:
        if nbytes < self._header_size:
            return
        _session, sequence, count = self._header(buffer)
        self.packets += 1
        if count == self._end_of_session:
            self.ended = True
            count = 0
        elif count == self._heartbeat:
            self.heartbeats += 1
        expected = self.next_sequence
        if expected == 0:
            expected = 1              # the stream starts at 1; the bench binds before the exchange starts
        if sequence > expected:
            self.gaps += 1
            self.missing += sequence - expected
        elif sequence < expected:
            self.late += 1            # a duplicate or reordered packet
        self.next_sequence = max(expected, sequence + count)
        self.messages += count
        if in_window:
            self.window_messages += count
            self.window_packets += 1


def exchange_status(control: str) -> dict | None:
    try:
        from appliance.command_io.json_lines import request_json
        answer = request_json(control, {"command": "status"}, 5.0, "the exchange")
        return answer if answer.get("ok", True) else None
    except Exception:  # noqa: BLE001 - the status is an extra; the feed is measured without it
        return None


def status_numbers(status: dict | None) -> tuple[int | None, int | None]:
    """(background operations run, feed messages published) from a ``status`` answer."""
    if not status:
        return None, None
    ops = (status.get("counters") or {}).get("background_operations")
    if ops is None:
        ops = (status.get("background") or {}).get("operations")
    published = (status.get("feed") or {}).get("messages")
    return ops, published


def measure_feed(rate: float, seconds: float, order_rate: float, timeout: float) -> dict:
    """One exchange process at background ``rate``: our orders and the feed for ``seconds``."""
    import select
    import shutil
    import socket
    import tempfile

    from appliance.sim.exchange_process import ExchangeProcess
    from appliance.sim.ports import udp_receiver
    from appliance.wire import ouch
    from appliance.wire.soupbintcp_session import ClientSession, LoginAccepted, LoginRejected, SequencedMessage

    tmp = tempfile.mkdtemp(prefix="bexch", dir="/tmp")        # short: UNIX socket paths are limited
    control = os.path.join(tmp, "ctl.sock")
    feed = exchange = tcp = None
    try:
        feed = udp_receiver()
        exchange = ExchangeProcess(exchange_args(feed.getsockname()[1], control, rate))
        ports = exchange.wait_ready(timeout)
        if "order_entry" not in ports or not isinstance(ports["order_entry"], tuple):
            raise RuntimeError(f"no order_entry=HOST:PORT in the exchange's ready line ({ports})")

        counter = FeedCounter()
        buffer = bytearray(65536)
        recv_into = feed.recv_into

        def drain(in_window: bool) -> None:
            while True:
                try:
                    n = recv_into(buffer, 65536)
                except (BlockingIOError, InterruptedError):
                    return
                counter.packet(buffer, n, in_window)

        tcp = socket.create_connection(ports["order_entry"], timeout=timeout)
        tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tcp.setblocking(False)
        session = ClientSession(FEED_FIRM, FEED_PASSWORD, "", 1)
        session.connect(time.monotonic_ns())
        tcp.sendall(session.take_outbound())
        ouch_types: dict[str, int] = {}
        window_types: dict[str, int] = {}
        tcp_open = True

        def pump_tcp(in_window: bool) -> list:
            nonlocal tcp_open
            events: list = []
            while tcp_open:
                try:
                    data = tcp.recv(65536)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    tcp_open = False
                    break
                if not data:
                    tcp_open = False
                    break
                events += session.receive(data, time.monotonic_ns())
            for event in events:
                if type(event) is SequencedMessage:
                    kind = chr(event.message[0]) if event.message else "?"
                    ouch_types[kind] = ouch_types.get(kind, 0) + 1
                    if in_window:
                        window_types[kind] = window_types.get(kind, 0) + 1
            return events

        def send(data: bytes) -> None:
            tcp.settimeout(timeout)           # blocking, but never for ever
            try:
                tcp.sendall(data)
            finally:
                tcp.setblocking(False)

        deadline = time.monotonic() + timeout
        logged_in = False
        while not logged_in:
            if time.monotonic() > deadline:
                raise RuntimeError(f"no SoupBinTCP login answer within {timeout:g} s")
            select.select([tcp, feed], [], [], 0.05)
            drain(False)
            for event in pump_tcp(False):
                if type(event) is LoginAccepted:
                    logged_in = True
                elif type(event) is LoginRejected:
                    raise RuntimeError(f"login of {FEED_FIRM} rejected: {event.reason!r}")
            if not tcp_open and not logged_in:
                raise RuntimeError("the exchange closed the order-entry connection before the login answer")

        status_before = exchange_status(control)
        interval_ns = int(1e9 / order_rate)
        entered = canceled = 0
        start = time.monotonic_ns()
        end = start + int(seconds * 1e9)
        next_send = start
        k = 0
        while True:
            now = time.monotonic_ns()
            if now >= end:
                break
            due = []
            while next_send <= now and len(due) < 64:
                if k % 2 == 0:
                    due.append(ouch.encode_inbound({
                        "type": "O", "order_token": f"B{k // 2}", "buy_sell_indicator": "B", "shares": 100,
                        "stock": FEED_SYMBOL, "price": FEED_PRICE, "time_in_force": ouch.TIME_IN_FORCE_MARKET_HOURS,
                        "firm": "", "display": "Y", "capacity": "A", "intermarket_sweep_eligibility": "N",
                        "minimum_quantity": 0, "cross_type": "N", "customer_type": "R"}))
                    entered += 1
                else:
                    due.append(ouch.encode_inbound({"type": "X", "order_token": f"B{k // 2}", "shares": 0}))
                    canceled += 1
                k += 1
                next_send += interval_ns
            if due:
                for message in due:
                    session.send_unsequenced(message, now)
            session.tick(now)
            out = session.take_outbound()
            if out and tcp_open:
                send(out)
            wait = max(0.0, min(next_send, end) - time.monotonic_ns()) / 1e9
            select.select([feed, tcp], [], [], min(wait, 0.005))
            drain(True)
            pump_tcp(True)
        window_s = (time.monotonic_ns() - start) / 1e9
        drain(True)
        window_messages = counter.window_messages
        status_after = exchange_status(control)

        # End the day: SIGTERM, keep receiving (End of Session, the day's last messages) until it exits.
        exchange.terminate()
        stop_deadline = time.monotonic() + timeout
        while exchange.proc.poll() is None and time.monotonic() < stop_deadline:
            select.select([feed] + ([tcp] if tcp_open else []), [], [], 0.05)
            drain(False)
            pump_tcp(False)
        drain(False)
        exit_code = exchange.proc.poll()
        error = None
        if exit_code is None:
            error = f"the exchange did not exit within {timeout:g} s of SIGTERM (killed)"
        elif exit_code != 0:
            error = f"the exchange exited {exit_code} after SIGTERM:\n" + exchange.output_tail()

        # our own ITCH messages in the window: each Accepted (it rests) made an 'A', each Canceled a 'D'
        own_itch = window_types.get("A", 0) + window_types.get("C", 0)
        ops_before, pub_before = status_numbers(status_before)
        ops_after, pub_after = status_numbers(status_after)
        background_ops_per_s = (ops_after - ops_before) / window_s \
            if ops_before is not None and ops_after is not None else None
        published_per_s = (pub_after - pub_before) / window_s \
            if pub_before is not None and pub_after is not None else None
        msgs_per_s = window_messages / window_s
        background_msgs_per_s = max(0, window_messages - own_itch) / window_s
        result = {
            "rate_asked": rate,
            "seconds": window_s,
            "msgs": window_messages,
            "msgs_per_s": msgs_per_s,
            "background_msgs_per_s": background_msgs_per_s,
            "achieved_ratio": background_msgs_per_s / rate,
            "background_ops_per_s": background_ops_per_s,
            "background_ops_ratio": background_ops_per_s / rate if background_ops_per_s is not None else None,
            "published_msgs_per_s": published_per_s,
            "packets": counter.window_packets,
            "gaps": counter.gaps,
            "missing_messages": counter.missing,
            "late_packets": counter.late,
            "heartbeats": counter.heartbeats,
            "end_of_session": counter.ended,
            "orders_sent": entered,
            "cancels_sent": canceled,
            "ouch_messages": sum(ouch_types.values()),
            "ouch_messages_in_window": sum(window_types.values()),
            "ouch_by_type": dict(sorted(ouch_types.items())),
            "exit_code": exit_code,
        }
        if error:
            result["error"] = error
        return result
    finally:
        if tcp is not None:
            tcp.close()
        if exchange is not None:
            exchange.close()
        if feed is not None:
            feed.close()
        shutil.rmtree(tmp, ignore_errors=True)


def measure_feeds(rates, seconds: float, order_rate: float, timeout: float) -> tuple[dict, list[str]]:
    runs, errors = [], []
    for rate in rates:
        try:
            run = measure_feed(rate, seconds, order_rate, timeout)
        except Exception as exc:  # noqa: BLE001 - one failed rate is reported, the others still run
            run = {"rate_asked": rate, "error": f"{type(exc).__name__}: {exc}"}
        if "error" in run:
            errors.append(f"rate {rate:g}: {run['error']}")
        runs.append(run)
    measured = [r["msgs_per_s"] for r in runs if r.get("msgs_per_s") is not None]
    feed = {"msgs_per_s": max(measured) if measured else None, "seconds": seconds, "order_rate": order_rate,
            "symbol": FEED_SYMBOL, "runs": runs,
            "note": "msgs_per_s: the most MoldUDP64 messages per second received in any run's window"}
    return feed, errors
