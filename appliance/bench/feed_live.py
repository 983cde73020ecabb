"""The live part of ``appliance bench feed``: the feed agent as a process, the exchange sending to it.

The packet-receive-to-ring-write path with real processes on loopback, one fresh
set per rate in ``--rates`` (background operations/s asked of the exchange):

* this process creates the shared memory (a ``bench<token>`` layout: a ``feed`` process with
  the ``--feed-idle`` strategy, backoff by default, and a ``strategy`` entry never started),
  starts the feed agent (``python -m appliance.runtime.agent``), waits until it runs, then
  starts the simulated exchange (``appliance exchange``) sending MoldUDP64 to the feed's port
  only, with its re-request server on the port the feed was configured with;
* after ``--settle`` seconds of warm-up, a ``--seconds`` window between two control-socket
  ``status`` answers (messages published = the exchange's message store); this process
  drains the ``book_updates`` ring every millisecond and takes, from every BookUpdate whose
  packet arrived in the window (``t_rx_ns``, the kernel receive timestamp), the latency
  ``t_feed_out_ns - t_rx_ns`` (one packet carries many messages: later ones wait for the
  earlier ones; ``first_in_packet`` is the first update of each packet alone, and
  ``update_spacing_in_packet`` the time between consecutive updates of one packet: the feed's
  work per update as it runs); the CPU time the feed, the exchange and this process used in
  the window (``/proc/PID/stat``; the feed's includes its idle strategy);
* then up to ``--catch-up`` seconds for the feed to deliver everything published by the
  end of the window. A rate has **no loss** when, from the start of the window to the end of
  the catch-up, ``feed.gaps`` and ``feed.messages_lost`` did not move and the feed caught
  up. ``max_msgs_per_s_no_loss`` is the highest published rate (messages/s the exchange
  actually sent, not the rate asked) with no loss. When the exchange ran fewer background
  operations than ``SENDER_LIMIT_RATIO`` of those asked, the row says the sender was the limit.

The live peer: a bare Python ``recv_into`` loop in this process on a UDP socket with the
same receive buffer and the same idle strategy, counting packets and messages (and gaps by
sequence number), fed by a fresh exchange at the same rates: the ceiling for any Python
receiver. Kernel socket drops (``/proc/net/udp``) are reported for both.

Every child process is ended and reaped and the shared memory unlinked on every path,
Ctrl-C and SIGTERM included.
"""
from __future__ import annotations

import gc
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from array import array

from appliance.bench.agent_process import AgentProcess
from appliance.bench.timing import percentile as _percentile
from appliance.sim.ports import free_ports, udp_receiver

TARGET_RX_TO_RING_P50_NS = 5_000
DEFAULT_RATES = (5_000, 10_000, 20_000, 40_000, 80_000)
SENDER_LIMIT_RATIO = 0.9             # fewer background operations than this share of the asked rate: sender-limited
RING_CAPACITY = 1 << 16
RCVBUF_BYTES = 8 << 20               # the feed's default rcvbuf_bytes; the bare receiver asks for the same
DRAIN_PERIOD_S = 0.001
LAYOUT_PREFIX = "bench"
IDLE_STRATEGIES = {
    # as in tests/feed/test_feed_agent.py: spin, yield, then park 10 us doubling to 200 us
    "backoff": {"strategy": "backoff", "spins": 100, "yields": 10, "min_park_ns": 10_000, "max_park_ns": 200_000},
    "yield": {"strategy": "yield"},
    "spin": {"strategy": "busy_spin"},    # the feed as it runs with a core of its own (issue 16's live target)
}


def latency_summary(latencies) -> dict:
    """count, p50/p99/p99.9/max of a sequence of nanoseconds (None when empty)."""
    ordered = sorted(latencies)
    if not ordered:
        return {"count": 0, "p50_ns": None, "p99_ns": None, "p999_ns": None, "max_ns": None}
    return {"count": len(ordered), "p50_ns": _percentile(ordered, 0.50), "p99_ns": _percentile(ordered, 0.99),
            "p999_ns": _percentile(ordered, 0.999), "max_ns": int(ordered[-1])}



# ---------------------------------------------------------------------------
# live: processes and sockets
# ---------------------------------------------------------------------------

def udp_drops(port: int) -> int | None:
    """The kernel's drop count of the UDP socket bound to 127.0.0.1:``port`` (``/proc/net/udp``)."""
    wanted = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/udp") as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                if len(fields) >= 13 and fields[1] == wanted:
                    return int(fields[12])
    except (OSError, StopIteration, ValueError):
        pass
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (``/proc/PID/stat``), None when unreadable."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _cpu_share(before: float | None, after: float | None, seconds: float) -> float | None:
    return None if before is None or after is None else (after - before) / seconds


def _start_exchange(feed_port: int, rerequest_port: int, source_port: int, control: str, rate: float, timeout: float):
    from appliance.bench.exchange_load import exchange_args
    from appliance.sim.exchange_process import ExchangeProcess
    exchange = ExchangeProcess(exchange_args(feed_port, control, rate, rerequest_port, source_port))
    try:
        exchange.wait_ready(timeout)
    except BaseException:
        exchange.close()
        raise
    return exchange


def _stop_exchange(exchange) -> int | None:
    """SIGTERM, up to 5 s to end the day: its exit status (None when it had to be killed)."""
    exchange.terminate()
    try:
        exchange.proc.wait(5)
    except subprocess.TimeoutExpired:
        pass
    code = exchange.proc.poll()
    exchange.close()
    return code


def _background_ops(status: dict | None) -> int | None:
    from appliance.bench.exchange_load import status_numbers
    return status_numbers(status)[0]


def _published(status: dict | None) -> int | None:
    from appliance.bench.exchange_load import status_numbers
    return status_numbers(status)[1]


def _status_or_fail(control: str) -> dict:
    from appliance.bench.exchange_load import exchange_status
    status = exchange_status(control)
    if status is None or _published(status) is None:
        raise RuntimeError("the exchange's control socket gave no status")
    return status


def exchange_symbols() -> list[str]:
    from appliance.exchange.config import default_config
    return [s.symbol for s in default_config().symbols]


def feed_layout(name: str, feed_port: int, rerequest_port: int, source_port: int, symbols: list[str], idle: str,
                books: str = "compiled") -> dict:
    return {
        "version": 1,
        "name": name,
        "segments": [{"name": "main", "backing": "4k", "mode": "0600"}],
        "tables": [{"name": "counters", "kind": "counters", "segment": "main", "slots_per_process": 128},
                   {"name": "processes", "kind": "processes", "segment": "main"},
                   {"name": "market_state", "kind": "market_state", "segment": "main"}],
        "rings": [{"name": "book_updates", "segment": "main", "producer": "feed", "consumer": "strategy",
                   "message": "BookUpdate", "slot_size": 192, "capacity": RING_CAPACITY}],
        "processes": [{"name": "feed", "agent": "appliance.feed.agent:FeedAgent", "idle": dict(IDLE_STRATEGIES[idle]),
                       "params": {"listen": {"host": "127.0.0.1", "port": feed_port},
                                  "rerequest": {"host": "127.0.0.1", "port": rerequest_port},
                                  "source": {"host": "127.0.0.1", "port": source_port},
                                  "rcvbuf_bytes": RCVBUF_BYTES, "compiled_books": books == "compiled"}},
                      {"name": "strategy", "agent": "appliance.strategy.agent:StrategyAgent",
                       "idle": {"strategy": "sleep"}}],
        "symbols": list(symbols),
    }


class FeedUnderLoad(AgentProcess):
    """The shared memory (owned here), the feed agent as a process, and a reader of its ring and counters."""

    def __init__(self, workdir: str, name: str, feed_port: int, rerequest_port: int, source_port: int,
                 symbols: list[str], idle: str, timeout: float, books: str = "compiled") -> None:
        import yaml

        from appliance.messages.catalog import BOOK_UPDATE

        self.ring = self.buffer = self.counters_reader = None
        layout_path = os.path.join(workdir, "layout.yaml")
        with open(layout_path, "w") as fh:
            yaml.safe_dump(feed_layout(name, feed_port, rerequest_port, source_port, symbols, idle, books), fh,
                           sort_keys=False)
        super().__init__(layout_path, "feed", [sys.executable, "-m", "appliance.runtime.agent", "--layout",
                                               layout_path, "--process", "feed"],
                         os.path.join(workdir, "feed.log"), timeout)
        try:
            self.ring = self.memory.ring("book_updates", "consumer")
            self.buffer = self.memory.ring_buffer("book_updates")
            self.counters_reader = self.memory.counters_reader()
        except BaseException:
            self.close()
            raise
        self._times = struct.Struct("<QQ").unpack_from
        self._rx_offset = BOOK_UPDATE.offset_of["t_rx_ns"]
        assert BOOK_UPDATE.offset_of["t_feed_out_ns"] == self._rx_offset + 8
        self.updates = 0
        self.latencies = array("q")
        self.first_in_packet = array("q")
        self.spacing = array("q")                 # t_feed_out between consecutive updates of one packet
        self.stale_updates = 0
        self._last_rx = -1
        self._last_out = 0

    def counters(self) -> dict[str, int]:
        return self.counters_reader.by_label()

    def drain(self, window_start_ns: int = 0, window_end_ns: int = 0) -> int:
        """Release every waiting BookUpdate; those whose packet arrived in [start, end) give a latency."""
        ring, buffer, times, offset_rx = self.ring, self.buffer, self._times, self._rx_offset
        latencies, first, spacing = self.latencies, self.first_in_packet, self.spacing
        n = 0
        while True:
            offset = ring.peek()
            if offset < 0:
                break
            t_rx, t_out = times(buffer, offset + offset_rx)
            ring.release()
            n += 1
            if t_rx == 0:
                self.stale_updates += 1           # a state change not caused by a packet (stale/live)
                continue
            if window_start_ns <= t_rx < window_end_ns:
                latency = t_out - t_rx
                latencies.append(latency)
                if t_rx != self._last_rx:
                    first.append(latency)
                else:
                    spacing.append(t_out - self._last_out)
            self._last_rx = t_rx
            self._last_out = t_out
        self.updates += n
        return n

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after 5 s; the exit status (None when it had to be killed)."""
        return self.terminate(5)

    def close(self) -> None:
        """Drop the ring and counter handles, then end the process and remove the memory."""
        if self.counters_reader is not None:
            self.counters_reader.close()
        self.ring = self.buffer = self.counters_reader = None
        super().close()


def _delta(after: dict, before: dict, label: str) -> int:
    return after.get(label, 0) - before.get(label, 0)


def _sender(rate: float, ops_per_s: float | None) -> dict:
    ratio = ops_per_s / rate if ops_per_s is not None else None
    return {"background_ops_per_s": ops_per_s, "achieved_ratio": ratio,
            "sender_limited": ratio is not None and ratio < SENDER_LIMIT_RATIO}


def bench_workdir() -> tuple[str, str]:
    token = secrets.token_hex(4)
    name = f"{LAYOUT_PREFIX}feed{token}"                    # the layout name prefixes /dev/shm names (<= 24)
    return name, tempfile.mkdtemp(prefix=f"{name}-", dir="/tmp")   # short: UNIX socket paths are limited


def measure_feed_rate(rate: float, args, symbols: list[str]) -> dict:
    """One exchange and one feed agent at ``rate``: the window, the catch-up, the latencies."""
    name, workdir = bench_workdir()
    control = os.path.join(workdir, "ctl.sock")
    feed = exchange = None
    try:
        feed_port, rerequest_port, source_port = free_ports(3)
        feed = FeedUnderLoad(workdir, name, feed_port, rerequest_port, source_port, symbols, args.feed_idle,
                             args.timeout, getattr(args, "feed_books", "compiled"))
        exchange = _start_exchange(feed_port, rerequest_port, source_port, control, rate, args.timeout)
        deadline = time.monotonic() + args.timeout
        while feed.counters().get("feed.messages_delivered", 0) == 0:   # the start of day arrived
            if time.monotonic() > deadline:
                raise RuntimeError(f"the feed delivered nothing within {args.timeout:g} s:\n" + feed.log_tail())
            feed.drain()
            time.sleep(0.01)
        settle_end = time.monotonic() + args.settle
        while time.monotonic() < settle_end:
            feed.drain()
            time.sleep(DRAIN_PERIOD_S)
        feed.drain()

        before = feed.counters()
        drops_before = udp_drops(feed_port)
        cpu_before = cpu_seconds(feed.proc.pid), cpu_seconds(exchange.proc.pid), _own_cpu()
        status_before = _status_or_fail(control)
        start_mono, start_wall = time.monotonic(), time.time_ns()
        end_mono = start_mono + args.seconds
        far = 2**63
        while time.monotonic() < end_mono:
            feed.drain(start_wall, far)
            time.sleep(DRAIN_PERIOD_S)
        end_wall = time.time_ns()
        status_after = _status_or_fail(control)
        window_s = time.monotonic() - start_mono
        cpu_after = cpu_seconds(feed.proc.pid), cpu_seconds(exchange.proc.pid), _own_cpu()
        in_window = feed.counters()
        feed.drain(start_wall, end_wall)

        published = _published(status_after)
        catch_up_deadline = time.monotonic() + args.catch_up
        caught_up_s = None
        while True:
            feed.drain(start_wall, end_wall)
            if feed.counters().get("feed.messages_delivered", 0) >= published:
                caught_up_s = time.monotonic() - (catch_up_deadline - args.catch_up)
                break
            if time.monotonic() > catch_up_deadline:
                break
            time.sleep(DRAIN_PERIOD_S)
        time.sleep(0.02)                                  # the counters are refreshed every 10 ms
        after = feed.counters()
        feed.drain(start_wall, end_wall)
        drops_after = udp_drops(feed_port)
        exchange_exit = _stop_exchange(exchange)
        exchange = None
        feed_exit = feed.stop()

        sent = published - _published(status_before)
        ops_before, ops_after = _background_ops(status_before), _background_ops(status_after)
        ops_per_s = (ops_after - ops_before) / window_s if ops_before is not None and ops_after is not None else None
        gaps = _delta(after, before, "feed.gaps")
        lost = _delta(after, before, "feed.messages_lost")
        delivered_window = _delta(in_window, before, "feed.messages_delivered")
        latency = latency_summary(feed.latencies)
        first = latency_summary(feed.first_in_packet)
        kernel_drops = None if drops_before is None or drops_after is None else drops_after - drops_before
        no_loss = gaps == 0 and lost == 0 and caught_up_s is not None
        feed_cpu = _cpu_share(cpu_before[0], cpu_after[0], window_s)
        return {
            "rate_asked": rate, "seconds": window_s,
            "published": sent, "published_msgs_per_s": sent / window_s, **_sender(rate, ops_per_s),
            "delivered": delivered_window, "delivered_msgs_per_s": delivered_window / window_s,
            "delivered_total": after.get("feed.messages_delivered", 0), "published_total": published,
            "caught_up": caught_up_s is not None, "catch_up_s": caught_up_s,
            "gaps": gaps, "messages_recovered": _delta(after, before, "feed.messages_recovered"),
            "messages_lost": lost, "gaps_abandoned": _delta(after, before, "feed.gaps_abandoned"),
            "gaps_before_window": before.get("feed.gaps", 0),
            "kernel_drops": kernel_drops,
            "packets": _delta(after, before, "feed.rx_packets"),
            "duplicate_packets": _delta(after, before, "feed.duplicate_packets"),
            "bad_packets": _delta(after, before, "feed.bad_packets"),
            "book_updates": _delta(in_window, before, "feed.book_updates"),
            "book_updates_dropped": _delta(after, before, "feed.book_updates_dropped"),
            "unknown_order": after.get("feed.book.unknown_order", 0),
            "no_loss": no_loss,
            "rx_to_ring": latency, "rx_to_ring_first_in_packet": first,
            "update_spacing_in_packet": latency_summary(feed.spacing),
            "feed_cpu_share": feed_cpu,
            "feed_cpu_ns_per_msg": feed_cpu * 1e9 / (delivered_window / window_s)
            if feed_cpu is not None and delivered_window else None,
            "exchange_cpu_share": _cpu_share(cpu_before[1], cpu_after[1], window_s),
            "bench_cpu_share": _cpu_share(cpu_before[2], cpu_after[2], window_s),
            "rx_to_ring_p50_ns": latency["p50_ns"], "rx_to_ring_p99_ns": latency["p99_ns"],
            "rx_to_ring_p999_ns": latency["p999_ns"],
            "exchange_exit": exchange_exit, "feed_exit": feed_exit, "layout": name,
        }
    finally:
        if exchange is not None:
            exchange.close()
        if feed is not None:
            feed.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def _make_idle(name: str):
    from appliance.runtime.idle import BackoffIdle, BusySpinIdle, YieldIdle, lower_timer_slack
    spec = IDLE_STRATEGIES[name]
    if spec["strategy"] == "yield":
        return YieldIdle()
    if spec["strategy"] == "busy_spin":
        return BusySpinIdle()
    lower_timer_slack()                  # as the agent runner does for a parking strategy
    return BackoffIdle(spec["spins"], spec["yields"], spec["min_park_ns"], spec["max_park_ns"])


def measure_bare_rate(rate: float, args) -> dict:
    """The peer: one exchange at ``rate`` sending to a ``recv_into`` loop in this process."""
    from appliance.bench.exchange_load import FeedCounter

    name, workdir = bench_workdir()
    control = os.path.join(workdir, "ctl.sock")
    sock = exchange = None
    try:
        sock = udp_receiver(RCVBUF_BYTES)
        port = sock.getsockname()[1]
        rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        exchange = _start_exchange(port, 0, 0, control, rate, args.timeout)
        counter = FeedCounter()
        buffer = bytearray(65536)
        recv_into = sock.recv_into
        packet = counter.packet
        idle = _make_idle(args.feed_idle).idle
        monotonic = time.monotonic

        def pump(in_window: bool) -> int:
            work = 0
            while True:
                try:
                    n = recv_into(buffer, 65536)
                except (BlockingIOError, InterruptedError):
                    return work
                packet(buffer, n, in_window)
                work += 1

        def loop(until: float, in_window: bool, done=None) -> bool:
            gc.disable()
            try:
                while monotonic() < until:
                    idle(pump(in_window))
                    if done is not None and done():
                        return True
                return False
            finally:
                gc.enable()

        deadline = monotonic() + args.timeout
        while counter.messages == 0:
            if monotonic() > deadline:
                raise RuntimeError(f"the bare receiver got nothing within {args.timeout:g} s")
            loop(monotonic() + 0.01, False)
        loop(monotonic() + args.settle, False)
        gaps0, missing0 = counter.gaps, counter.missing
        drops_before = udp_drops(port)
        cpu_before = _own_cpu(), cpu_seconds(exchange.proc.pid)
        status_before = _status_or_fail(control)
        start = monotonic()
        loop(start + args.seconds, True)
        status_after = _status_or_fail(control)
        window_s = monotonic() - start
        cpu_after = _own_cpu(), cpu_seconds(exchange.proc.pid)
        published = _published(status_after)
        catch_start = monotonic()
        caught = loop(catch_start + args.catch_up, False, lambda: counter.next_sequence - 1 >= published) or \
            counter.next_sequence - 1 >= published
        caught_up_s = monotonic() - catch_start if caught else None
        drops_after = udp_drops(port)
        exchange_exit = _stop_exchange(exchange)
        exchange = None

        sent = published - _published(status_before)
        ops_before, ops_after = _background_ops(status_before), _background_ops(status_after)
        ops_per_s = (ops_after - ops_before) / window_s if ops_before is not None and ops_after is not None else None
        gaps = counter.gaps - gaps0
        kernel_drops = None if drops_before is None or drops_after is None else drops_after - drops_before
        return {
            "rate_asked": rate, "seconds": window_s,
            "published": sent, "published_msgs_per_s": sent / window_s, **_sender(rate, ops_per_s),
            "received": counter.window_messages, "received_msgs_per_s": counter.window_messages / window_s,
            "packets": counter.window_packets, "gaps": gaps, "missing_messages": counter.missing - missing0,
            "late_packets": counter.late, "kernel_drops": kernel_drops, "rcvbuf_bytes": rcvbuf,
            "caught_up": caught, "catch_up_s": caught_up_s, "no_loss": gaps == 0 and caught,
            "receiver_cpu_share": _cpu_share(cpu_before[0], cpu_after[0], window_s),
            "exchange_cpu_share": _cpu_share(cpu_before[1], cpu_after[1], window_s),
            "exchange_exit": exchange_exit,
        }
    finally:
        if exchange is not None:
            exchange.close()
        if sock is not None:
            sock.close()
        shutil.rmtree(workdir, ignore_errors=True)


def _max_no_loss(runs: list[dict]) -> float | None:
    good = [r["published_msgs_per_s"] for r in runs if r.get("no_loss")]
    return max(good) if good else None


def measure_live(args) -> tuple[dict, dict, dict, list[str]]:
    """(live result, peers, ratios, errors) of the live part."""
    symbols = exchange_symbols()
    runs, bare_runs, errors = [], [], []
    for rate in args.rates:
        try:
            run = measure_feed_rate(rate, args, symbols)
        except Exception as exc:  # noqa: BLE001 - one failed rate is reported, the others still run
            run = {"rate_asked": rate, "error": f"{type(exc).__name__}: {exc}"}
            errors.append(f"feed at rate {rate:g}: {run['error']}")
        runs.append(run)
        if args.skip_peers:
            continue
        try:
            bare = measure_bare_rate(rate, args)
        except Exception as exc:  # noqa: BLE001
            bare = {"rate_asked": rate, "error": f"{type(exc).__name__}: {exc}"}
            errors.append(f"bare receiver at rate {rate:g}: {bare['error']}")
        bare_runs.append(bare)
        if "error" not in run and "error" not in bare and bare["received_msgs_per_s"]:
            run["vs_bare_receiver"] = run["delivered_msgs_per_s"] / bare["received_msgs_per_s"]

    best = _max_no_loss(runs)
    measured = [r for r in runs if "error" not in r]
    # The headline latency: at the highest rate without loss; without one, at the lowest rate measured.
    lossless = [r for r in measured if r["no_loss"]]
    pick = max(lossless, key=lambda r: r["published_msgs_per_s"]) if lossless else \
        (min(measured, key=lambda r: r["rate_asked"]) if measured else None)
    live = {
        "max_msgs_per_s_no_loss": best,
        "rx_to_ring_p50_ns": pick["rx_to_ring_p50_ns"] if pick else None,
        "rx_to_ring_p99_ns": pick["rx_to_ring_p99_ns"] if pick else None,
        "rx_to_ring_p999_ns": pick["rx_to_ring_p999_ns"] if pick else None,
        "latency_at_rate_asked": pick["rate_asked"] if pick else None,
        "latency_at_msgs_per_s": pick["published_msgs_per_s"] if pick else None,
        "latency_run_had_loss": bool(pick) and not pick["no_loss"],
        "sender_limited_at": [r["rate_asked"] for r in measured if r["sender_limited"]],
        "highest_published_msgs_per_s": max((r["published_msgs_per_s"] for r in measured), default=None),
        # "sender": no loss at the most the exchange sent, so the feed's limit was not reached;
        # "feed": some rate the exchange reached had loss
        "limited_by": None if not measured else
        ("feed" if any(not r["no_loss"] for r in measured) else "sender"),
        "seconds": args.seconds, "settle_seconds": args.settle, "catch_up_seconds": args.catch_up,
        "symbols": symbols, "subscribed": symbols, "feed_idle": IDLE_STRATEGIES[args.feed_idle],
        "feed_books": getattr(args, "feed_books", "compiled"),
        "rcvbuf_bytes": RCVBUF_BYTES, "target_rx_to_ring_p50_ns": TARGET_RX_TO_RING_P50_NS,
        "runs": runs,
    }
    peers: dict = {}
    ratios: dict = {"target_rx_to_ring_p50_ns": TARGET_RX_TO_RING_P50_NS}
    if live["rx_to_ring_p50_ns"]:
        ratios["rx_to_ring_p50_vs_target"] = live["rx_to_ring_p50_ns"] / TARGET_RX_TO_RING_P50_NS
    if args.skip_peers:
        peers["bare_recv_into"] = {"available": False, "skipped": True, "reason": "--skip-peers"}
    else:
        bare_best = _max_no_loss(bare_runs)
        peers["bare_recv_into"] = {"available": True, "max_msgs_per_s_no_loss": bare_best,
                                   "idle": IDLE_STRATEGIES[args.feed_idle], "runs": bare_runs,
                                   "what": "recv_into on a non-blocking UDP socket + MoldUDP64 header count "
                                           "and sequence check, in the bench process"}
        if best and bare_best:
            ratios["live_max_no_loss_vs_bare"] = best / bare_best
    return live, peers, ratios, errors
