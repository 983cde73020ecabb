"""``appliance bench dropcopy [--json]``: the drop copy and the risk hub over a real nats-server.

One run, one ``nats-server -js`` of its own (a temporary store, removed after):

- ``publish_events_per_s``: one drop copy publishing a journal of ``--events`` records (fills) to
  JetStream, acknowledged, while it goes from a fifth to four fifths of the journal
  (``publish_start_ms``: from its start to the first acknowledgement);
- ``hub_events_per_s``: a risk hub started on a stream holding ``--appliances`` appliances'
  journals, applying them to the firm's book, from a fifth to four fifths of the way
  (``hub_start_ms``: from its start to the first event applied);
- ``lag``: journal append to hub-applied, p50/p99, for ``--lag-events`` fills appended one every
  ``--lag-interval-us`` with the drop copy and the hub running (the journal record's timestamp to
  the moment the hub's book took it; one clock, one box);
- ``firm_kill``: the hub's KILL decision (the command's ``time_ns``) to the moment every
  appliance's supervisor control socket has the request (``--appliances`` drop copies, each with a
  control server standing in for its supervisor), ``--kills`` times. From there to the gate closed
  is the appliance's own kill path: ``tests/riskhub/test_riskhub_e2e.py`` prints it for real ones.
- peer ``nats_core``: the same event bytes published with plain NATS (no JetStream, no
  acknowledgement), to a subscriber that receives all of them, in the same run.

- peer ``nats_py_jetstream``: nats-py's own CPU per event (``_Bench.nats_py_jetstream``), the
  floor under the two figures above.

Beside each rate, the CPU microseconds per event of the thread doing it (the drop copy's, the
hub's, the peer's): what it costs, whatever else a shared box runs meanwhile.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from appliance.command_io.arguments import bounded

DAY_NS = 86_400 * 10**9
D = 10_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=bounded(int, 100, 10**7), default=20_000,
                        help="journal records of each appliance (default 20000): the one drop copy timed publishes them, the hub applies all")
    parser.add_argument("--appliances", type=bounded(int, 1, 16), default=3,
                        help="appliances in the hub's stream and drop copies for the kill (default 3)")
    parser.add_argument("--lag-events", type=bounded(int, 10, 10**6), default=500, help="fills timed for the lag")
    parser.add_argument("--lag-interval-us", type=bounded(int, 0, 10**6), default=2000,
                        help="one fill appended this often for the lag (default 2000)")
    parser.add_argument("--kills", type=bounded(int, 1, 1000), default=20, help="firm kills timed (default 20)")


def append_fill(journal, n: int, symbol: str = "AAPL", side: str = "B", shares: int = 100,
                price: int = 190 * D, broken: bool = False) -> int:
    """Order ``n`` (NEW, ``shares`` at ``price``) filled whole into an OMS journal, and its trade
    broken when asked: 2 records (3); its match number is ``n``."""
    from appliance.messages.codes import Action
    from appliance.oms import journal_records as jr
    from appliance.oms.journal_records import RecordType
    from appliance.wire import ouch
    now = time.time_ns()
    token = f"0FL1{n:010d}"
    journal.append(RecordType.ORDER_SENT, jr.ORDER_SENT.pack(
        action=Action.NEW, side=ord(side), time_in_force=99998, client_order_id=n, strategy_id=42,
        shares=shares, price=price, symbol=symbol.encode().ljust(8), token=token.encode()), now)
    executed = ouch.encode_outbound({"type": "E", "timestamp": now % DAY_NS, "order_token": token,
                                     "executed_shares": shares, "execution_price": price,
                                     "liquidity_flag": "A", "match_number": n})
    journal.append(RecordType.EXCHANGE_MESSAGE, jr.EXCHANGE_MESSAGE.pack(2 * n, executed), now + 1)
    if not broken:
        return 2
    message = ouch.encode_outbound({"type": "B", "timestamp": now % DAY_NS, "order_token": token,
                                    "match_number": n, "reason": "E"})
    journal.append(RecordType.EXCHANGE_MESSAGE, jr.EXCHANGE_MESSAGE.pack(2 * n + 1, message), now + 2)
    return 3


class _Thread:
    """A coroutine's owner (DropCopy or RiskHub) on its own thread and event loop."""

    def __init__(self, owner):
        self.owner = owner
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        from appliance.dropcopy.publisher import run_loop
        try:
            run_loop(self.owner.run())
        except BaseException as exc:   # noqa: BLE001 - reported by stop()
            self.error = exc

    def cpu_s(self) -> float:
        """The thread's CPU time so far (seconds): what it cost, whatever else the box runs."""
        return time.clock_gettime(time.pthread_getcpuclockid(self.thread.ident))

    def stop(self):
        self.owner.stop()
        self.thread.join(30)
        if self.error is not None:
            raise RuntimeError(f"{type(self.owner).__name__} failed: {self.error!r}")


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.001)


def _percentile(values: list, q: float):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class _Bench:
    def __init__(self, args, work: Path, url: str):
        self.args, self.work, self.url = args, work, url
        self.running: list[_Thread] = []
        self.journals: list = []

    def close(self):
        for owner in reversed(self.running):
            try:
                owner.stop()
            except RuntimeError as exc:
                print(f"warning: {exc}", file=sys.stderr)
        for journal in self.journals:
            journal.close()

    def journal(self, name: str):
        from appliance.oms.journal import Journal
        journal = Journal.open(str(self.work / f"{name}.bin"), 64 << 20, "page_cache")
        self.journals.append(journal)
        return journal

    def dropcopy(self, name: str, **options):
        from appliance.dropcopy.config import parse_dropcopy_params
        from appliance.dropcopy.publisher import DropCopy
        layout = SimpleNamespace(path=str(self.work / "layout.yaml"), name=name, processes={})
        config = parse_dropcopy_params({"nats": {"url": self.url}, "journal": str(self.work / f"{name}.bin"),
                                        "appliance": name, "batch": 1024, **options.pop("params", {})}, layout)
        copy = DropCopy(config, ["AAPL"], **options)
        self.running.append(_Thread(copy))
        return copy

    def hub(self, hub_class=None):
        from appliance.riskhub.config import load_hub_config
        from appliance.riskhub.hub import RiskHub
        path = self.work / "hub.yaml"
        path.write_text(json.dumps({"version": 1, "name": "bench", "nats": {"url": self.url}, "heartbeat_ms": 100}))
        hub = (hub_class or RiskHub)(load_hub_config(str(path)))
        self.running.append(_Thread(hub))
        return hub

    def stop(self, owner) -> None:
        for thread in self.running:
            if thread.owner is owner:
                self.running.remove(thread)
                thread.stop()
                return

    # ------------------------------------------------------------------ the measurements

    def thread_of(self, owner) -> _Thread:
        return next(thread for thread in self.running if thread.owner is owner)

    def timed(self, owner, progress, total: int, what: str) -> dict:
        """``owner`` (just started) brought ``progress()`` to ``total``: events per second and its
        thread's CPU microseconds per event while it went from a fifth to four fifths of the way
        (the throughput: as many events in flight at both ends; neither the start, nor the drain of
        the last ones), and the start apart (to the first event: connecting, the stream looked up,
        the journal scanned, nats-py imported)."""
        thread, started = self.thread_of(owner), time.perf_counter()
        _wait(lambda: progress() > 0, 600, what)
        first_at = time.perf_counter()
        marks = []
        for share in (0.2, 0.8):
            _wait(lambda: progress() >= share * total, 600, what)
            marks.append((time.perf_counter(), progress(), thread.cpu_s()))
        _wait(lambda: progress() >= total, 600, what)
        (t0, p0, c0), (t1, p1, c1) = marks
        if p1 <= p0:                                     # all at once (a tiny run): the whole of it
            (t0, p0, c0), (t1, p1, c1) = (started, 0, 0.0), (time.perf_counter(), total, thread.cpu_s())
        return {"events_per_s": (p1 - p0) / max(t1 - t0, 1e-9), "cpu_us_per_event": (c1 - c0) * 1e6 / (p1 - p0),
                "start_ms": (first_at - started) * 1e3}

    def publish_and_hub_rates(self) -> tuple[dict, dict]:
        """One drop copy publishing its journal, then a hub applying every appliance's: ``timed``."""
        n, apps = self.args.events, self.args.appliances
        names = [f"bench{i}" for i in range(apps)]
        for name in names:
            journal = self.journal(name)
            for order in range(1, n // 2 + 1):          # --events records each (a fill is 2)
                append_fill(journal, order, shares=1 + order % 100, side="BS"[order % 2])
        expected = self.journals[0].next_sequence - 1
        copy = self.dropcopy(names[0])
        publish = self.timed(copy, lambda: copy.stats.last_sequence, expected, "the drop copy publishing the journal")
        for name, journal in zip(names[1:], self.journals[1:]):
            other = self.dropcopy(name)
            _wait(lambda: other.stats.last_sequence == journal.next_sequence - 1, 600, f"{name} published")
        total = sum(j.next_sequence - 1 for j in self.journals)
        hub = self.hub()
        applying = self.timed(hub, lambda: hub.book.applied if hub.connected else 0, total, "the hub catching up")
        _wait(lambda: hub.caught_up, 600, "the hub catching up")
        if hub.book.applied != total:
            raise RuntimeError(f"the hub applied {hub.book.applied} of {total} events")
        self.stop(hub)
        return publish, applying

    def lag(self) -> list[int]:
        """Fills appended one at a time with the first drop copy and a hub running: each record's
        journal timestamp to the moment the hub's book took it."""
        from appliance.oms.journal_format import read_records
        from appliance.riskhub.hub import RiskHub
        applied: dict = {}                          # journal sequence -> when the hub took it

        class TimedHub(RiskHub):
            async def _on_event(self, message) -> None:
                await super()._on_event(message)
                book = self.book.appliances.get("bench0")
                if book is not None:
                    applied.setdefault(book.last_sequence, time.time_ns())
        journal = self.journals[0]
        hub = self.hub(TimedHub)
        _wait(lambda: hub.caught_up, 600, "the hub catching up")
        first = journal.next_sequence
        for order in range(10**6, 10**6 + self.args.lag_events):
            append_fill(journal, order)
            time.sleep(self.args.lag_interval_us / 1e6)
        last = journal.next_sequence - 1
        _wait(lambda: last in applied, 120, "the hub applying the fills")
        self.stop(hub)
        records, _, _ = read_records(journal.path)
        return [applied[r.sequence] - r.timestamp_ns for r in records if r.sequence >= first]

    def firm_kill(self) -> list[float]:
        from appliance.supervisor.control_server import ControlServer
        received: list[tuple[int, int]] = []        # (time_ns, server index)
        servers, stop = [], threading.Event()
        for i in range(self.args.appliances):
            servers.append(ControlServer(str(self.work / "ctl" / f"sup{i}.sock"),
                                         lambda request, _caller, i=i: received.append((time.time_ns(), i)) or
                                         {"ok": True}))

        def poll():
            while not stop.is_set():
                if not sum(server.poll() for server in servers):
                    stop.wait(0.0002)
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            copies = [self.dropcopy(f"kill{i}", control_socket=servers[i].path,
                                    params={"firm": {"commands": True, "heartbeat_timeout_ms": 3_600_000}})
                      for i in range(self.args.appliances)]
            hub = self.hub()
            _wait(lambda: hub.caught_up and all(c.firm.heartbeats for c in copies), 60, "heartbeats")
            latencies = []
            for _ in range(self.args.kills):
                received.clear()
                sent = asyncio.run_coroutine_threadsafe(hub.send("KILL", "bench", "bench"), hub._loop).result(10)
                _wait(lambda: len({i for _, i in received}) == len(servers), 30, "every supervisor asked")
                latencies.append((max(t for t, _ in received) - sent["time_ns"]) / 1e6)
            self.stop(hub)
            return latencies
        finally:
            stop.set()
            poller.join(10)
            for server in servers:
                server.close()

    def events(self) -> list[bytes]:
        """The first journal's events, as the drop copy publishes them."""
        from appliance.dropcopy.config import DropCopyConfig
        from appliance.dropcopy.publisher import event_of
        from appliance.oms.audit import AuditTrail
        from appliance.oms.journal_format import read_records
        records, _, header = read_records(self.journals[0].path)
        audit, config = AuditTrail(["AAPL"]), DropCopyConfig(appliance="bench0")
        return [e for e in (event_of(config, audit, r, header["trading_day"]) for r in records) if e is not None]

    def nats_py_jetstream(self) -> dict:
        """nats-py's own CPU per event, the floor under the drop copy's and the hub's figures: the
        same event bytes published to a stream of their own, each with a message id and a reply
        subject, every acknowledgement taken (no journal read, no audit row, no window), then read
        back through an ordered consumer into a callback that does nothing (no decode, no book)."""
        from nats.js.api import DeliverPolicy
        from appliance.dropcopy.publisher import run_loop
        events = self.events()

        async def run():
            import nats
            nc = await nats.connect(self.url)
            js = nc.jetstream()
            await js.add_stream(name="BENCH_FLOOR", subjects=["bench.floor"])
            counts, done = [0, 0], [asyncio.Event(), asyncio.Event()]

            def counter(which):
                async def take(_message):
                    counts[which] += 1
                    if counts[which] == len(events):
                        done[which].set()
                return take
            inbox = nc.new_inbox()
            acks = await nc.subscribe(inbox + ".*", cb=counter(0))
            cpu = time.thread_time()
            for i, data in enumerate(events):
                await nc.publish("bench.floor", data, reply=f"{inbox}.{i}", headers={"Nats-Msg-Id": f"floor:{i}"})
                if i % 1024 == 1023:
                    await asyncio.sleep(0)
            await asyncio.wait_for(done[0].wait(), 120)
            publish_cpu, cpu = time.thread_time() - cpu, time.thread_time()
            consumer = await js.subscribe("bench.floor", stream="BENCH_FLOOR", cb=counter(1), ordered_consumer=True,
                                          deliver_policy=DeliverPolicy.ALL)
            await asyncio.wait_for(done[1].wait(), 120)
            consume_cpu = time.thread_time() - cpu
            for sub in (acks, consumer):
                await sub.unsubscribe()
            await js.delete_stream("BENCH_FLOOR")
            await nc.close()
            return publish_cpu, consume_cpu
        publish_cpu, consume_cpu = run_loop(run())
        return {"publish_acked_cpu_us_per_event": round(publish_cpu * 1e6 / len(events), 2),
                "consume_cpu_us_per_event": round(consume_cpu * 1e6 / len(events), 2), "events": len(events)}

    def nats_core(self) -> dict:
        """The same event bytes, plain NATS publish to a subscriber taking every one."""
        events = self.events()

        async def run():
            import nats
            nc = await nats.connect(self.url)
            got = asyncio.Event()
            count = 0

            async def taken(_message):
                nonlocal count
                count += 1
                if count == len(events):
                    got.set()
            sub = await nc.subscribe("bench.core", cb=taken, pending_msgs_limit=len(events) + 1)
            await nc.flush()
            started, cpu = time.perf_counter(), time.thread_time()
            for data in events:
                await nc.publish("bench.core", data)
            await nc.flush()
            await asyncio.wait_for(got.wait(), 120)
            elapsed, cpu = time.perf_counter() - started, time.thread_time() - cpu
            await sub.unsubscribe()
            await nc.close()
            return elapsed, cpu
        elapsed, cpu = asyncio.run(run())
        return {"publish_events_per_s": round(len(events) / elapsed), "events": len(events),
                "cpu_us_per_event": round(cpu * 1e6 / len(events), 2),      # publishing and receiving each, one thread
                "event_bytes_mean": round(statistics.mean(len(e) for e in events))}


def run(args: argparse.Namespace) -> int:
    from appliance.sim.nats_server import NatsServer, find_nats_server
    if find_nats_server() is None:
        print("error: nats-server is not installed (apt-get install nats-server)", file=sys.stderr)
        return 1
    import logging
    logging.getLogger("appliance").setLevel(logging.ERROR)     # the FIRM KILL lines of every timed kill
    with tempfile.TemporaryDirectory(prefix="bench-dropcopy-") as tmp:
        work = Path(tmp)
        server = NatsServer(work / "nats").start()
        bench = _Bench(args, work, server.url)
        try:
            publish, applying = bench.publish_and_hub_rates()
            lags = bench.lag()
            kills = bench.firm_kill()
            core = bench.nats_core()
            floor = bench.nats_py_jetstream()
        finally:
            bench.close()
            server.stop()
    report = {
        "results": {"lag": {"p50_ns": _percentile(lags, 0.5), "p99_ns": _percentile(lags, 0.99), "count": len(lags)},
                    "publish_events_per_s": round(publish["events_per_s"]),
                    "hub_events_per_s": round(applying["events_per_s"]),
                    "publish_cpu_us_per_event": round(publish["cpu_us_per_event"], 2),
                    "hub_cpu_us_per_event": round(applying["cpu_us_per_event"], 2),
                    "publish_start_ms": round(publish["start_ms"], 1), "hub_start_ms": round(applying["start_ms"], 1),
                    "firm_kill": {"p50_ms": round(_percentile(kills, 0.5), 3), "p99_ms": round(_percentile(kills, 0.99), 3),
                                  "count": len(kills), "appliances": args.appliances,
                                  "to": "every supervisor's control socket"}},
        "peers": {"nats_core": core, "nats_py_jetstream": floor},
        "machine": {"cpus": os.cpu_count(), "events": args.events, "appliances": args.appliances},
    }
    if args.json:
        print(json.dumps(report))
        return 0
    r = report["results"]
    print(f"drop copy publish (JetStream, acknowledged): {r['publish_events_per_s']:>10,} events/s  "
          f"{r['publish_cpu_us_per_event']:6.2f} CPU us/event")
    print(f"plain NATS publish (peer, no JetStream):     {core['publish_events_per_s']:>10,} events/s  "
          f"{core['cpu_us_per_event']:6.2f} CPU us/event (publish and receive)")
    print(f"risk hub applying {args.appliances} appliances' stream:   {r['hub_events_per_s']:>10,} events/s  "
          f"{r['hub_cpu_us_per_event']:6.2f} CPU us/event")
    print(f"nats-py alone (peer, the floor): {floor['publish_acked_cpu_us_per_event']:6.2f} CPU us/event to publish "
          f"acknowledged, {floor['consume_cpu_us_per_event']:6.2f} to consume (ordered consumer, no decode)")
    print(f"starts before the first event: drop copy {r['publish_start_ms']:.0f} ms, hub {r['hub_start_ms']:.0f} ms")
    print(f"journal append to hub applied:  p50 {r['lag']['p50_ns'] / 1e6:.2f} ms  p99 {r['lag']['p99_ns'] / 1e6:.2f} ms "
          f"({r['lag']['count']} events)")
    print(f"firm kill, decision to {args.appliances} supervisors asked: p50 {r['firm_kill']['p50_ms']:.2f} ms  "
          f"p99 {r['firm_kill']['p99_ms']:.2f} ms ({len(kills)} kills)")
    return 0
