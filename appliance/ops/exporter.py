"""``appliance exporter``: the Prometheus scrape endpoint, reading shared memory at scrape time.

One process of its own (the supervisor will start it), bound to 127.0.0.1 by
default. A custom collector attaches to the segments read-only and turns ring
indices, process records and the counters table into metric families at each
scrape, so nothing on a hot path ever calls a metrics library. When the
appliance is not running, ``appliance_up`` is 0 and the exporter keeps
answering (it attaches again at the next scrape).

Names: one prefix ``appliance_``, base units (seconds), ``_total`` on counters.
Counters from the table keep their dotted label as a ``name`` label:
``appliance_component_events_total{name="probe.received"}`` (kind counter) and
``appliance_component_value{name="segment.main.hugepages"}`` (gauges and info).
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys

from appliance.cli import bounded

log = logging.getLogger(__name__)

DEFAULT_LAYOUT = "shm_layout.yaml"
PREFIX = "appliance"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layout", default=DEFAULT_LAYOUT, help=f"layout file (default {DEFAULT_LAYOUT})")
    parser.add_argument("--address", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=bounded(int, 0, 65535), default=9464,
                        help="TCP port, 0 for any free one (default 9464)")


class ShmCollector:
    """A prometheus_client collector over one layout's shared memory."""

    def __init__(self, layout):
        self.layout = layout
        self._observer = None

    def _attach(self):
        from appliance.ops.snapshot import Observer
        from appliance.runtime.segment import SegmentError
        if self._observer is None:
            try:
                self._observer = Observer(self.layout)
            except SegmentError as exc:
                log.debug("not attached: %s", exc)
        return self._observer

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        from appliance.runtime.counters import CounterKind, ProcessState
        up = GaugeMetricFamily(f"{PREFIX}_up", "1 when the appliance's shared memory is attached")
        observer = self._attach()
        if observer is None:
            up.add_metric([], 0)
            yield up
            return
        try:
            snap = observer.snapshot()
        except Exception:           # a segment torn down under us: detach, report down, retry next scrape
            log.exception("scrape failed; detaching")
            self._detach()
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        hugepages = GaugeMetricFamily(f"{PREFIX}_segment_hugepages", "1 when the segment is backed by huge pages",
                                      labels=["segment"])
        for seg in snap.segments:
            hugepages.add_metric([seg.name], 1 if seg.backing.startswith("hugepage") else 0)
        yield hugepages

        labels = ["ring", "producer", "consumer"]
        depth = GaugeMetricFamily(f"{PREFIX}_ring_depth", "messages waiting in the ring", labels=labels)
        capacity = GaugeMetricFamily(f"{PREFIX}_ring_capacity", "slots in the ring", labels=labels)
        max_depth = GaugeMetricFamily(f"{PREFIX}_ring_max_depth", "highest depth observed", labels=labels)
        published = CounterMetricFamily(f"{PREFIX}_ring_published", "messages published into the ring",
                                        labels=labels)
        consumed = CounterMetricFamily(f"{PREFIX}_ring_consumed", "messages consumed from the ring", labels=labels)
        full = CounterMetricFamily(f"{PREFIX}_ring_full_events", "times the producer found the ring full",
                                   labels=labels)
        for ring in snap.rings:
            values = [ring.name, ring.producer, ring.consumer]
            depth.add_metric(values, ring.depth)
            capacity.add_metric(values, ring.capacity)
            max_depth.add_metric(values, ring.max_depth)
            published.add_metric(values, ring.published)
            consumed.add_metric(values, ring.consumed)
            full.add_metric(values, ring.full_events)
        yield from (depth, capacity, max_depth, published, consumed, full)

        process_up = GaugeMetricFamily(f"{PREFIX}_process_up", "1 when the process is running and alive",
                                       labels=["process"])
        state = GaugeMetricFamily(f"{PREFIX}_process_state", "1 for the process's current state",
                                  labels=["process", "state"])
        age = GaugeMetricFamily(f"{PREFIX}_process_heartbeat_age_seconds", "time since the last duty cycle",
                                labels=["process"])
        duty = GaugeMetricFamily(f"{PREFIX}_process_max_duty_cycle_seconds", "longest do_work call",
                                 labels=["process"])
        cycles = CounterMetricFamily(f"{PREFIX}_process_duty_cycles", "duty cycles completed", labels=["process"])
        for proc in snap.processes:
            running = proc.alive and proc.state == "running"
            process_up.add_metric([proc.name], 1 if running else 0)
            for s in ProcessState:
                state.add_metric([proc.name, s.name.lower()], 1 if proc.state == s.name.lower() else 0)
            if proc.heartbeat_age_ms is not None:
                age.add_metric([proc.name], proc.heartbeat_age_ms / 1e3)
            duty.add_metric([proc.name], proc.max_duty_us / 1e6)
            cycles.add_metric([proc.name], proc.beats)
        yield from (process_up, state, age, duty, cycles)

        counter_total = CounterMetricFamily(f"{PREFIX}_component_events", "a counter from the shared-memory table",
                                            labels=["name"])
        gauge = GaugeMetricFamily(f"{PREFIX}_component_value", "a gauge or info value from the shared-memory table",
                                  labels=["name"])
        for info in observer.counters:
            if info.kind is CounterKind.COUNTER:
                counter_total.add_metric([info.label], info.value)
            else:
                gauge.add_metric([info.label], info.value)
        yield from (counter_total, gauge)

    def _detach(self) -> None:
        if self._observer is not None:
            try:
                self._observer.close()
            finally:
                self._observer = None


def run(args: argparse.Namespace) -> int:
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client import CollectorRegistry, make_wsgi_app

    from appliance.runtime.layout import LayoutError, load_layout

    logging.basicConfig(level=logging.INFO, format="%(asctime)s exporter[%(process)d] %(levelname)s %(message)s")
    try:
        layout = load_layout(args.layout)
    except LayoutError as exc:
        log.error("%s", exc)
        return 1
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ShmCollector(layout))

    class QuietHandler(WSGIRequestHandler):
        def log_message(self, *args):     # one line per scrape would drown the log
            pass

    try:
        server = make_server(args.address, args.port, make_wsgi_app(registry), handler_class=QuietHandler)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", args.address, args.port, exc.strerror)
        return 1
    log.info("serving metrics for layout %s on http://%s:%d/metrics", args.layout, args.address, server.server_port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))     # leave serve_forever through the finally
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
