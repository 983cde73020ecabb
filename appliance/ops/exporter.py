"""``appliance exporter``: the Prometheus scrape endpoint, reading shared memory at scrape time.

One process of its own (the supervisor will start it), bound to 127.0.0.1 by
default; any other address needs TLS and basic auth or it refuses to start
(``exporter_security.py``). A custom collector attaches to the segments read-only and turns ring
indices, process records and the counters table into metric families at each
scrape, so nothing on a hot path ever calls a metrics library. When the
appliance is not running, ``appliance_up`` is 0 and the exporter keeps
answering (it attaches again at the next scrape).

Names (all made in ``metrics.py``): one prefix ``appliance_``, base units
(seconds, dollars), ``_total`` on counters. Besides rings and processes: the
trading gate and its reasons, the clock guard, readiness, risk state and kill
switch, the OMS's session and open orders, per-symbol position, P&L, orders,
fills and book top, rejects by source and reason, restarts per process, and
the tick-to-trade histograms per hop. Counters from the table also keep their
dotted label as a ``name`` label:
``appliance_component_events_total{name="probe.received"}`` (kind counter) and
``appliance_component_value{name="segment.main.hugepages"}`` (gauges and info).
"""
from __future__ import annotations

import argparse
import faulthandler
import logging
import signal
import sys

from appliance.command_io.arguments import bounded

log = logging.getLogger(__name__)

DEFAULT_LAYOUT = "shm_layout.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layout", default=DEFAULT_LAYOUT, help=f"layout file (default {DEFAULT_LAYOUT})")
    parser.add_argument("--address", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=bounded(int, 0, 65535), default=9464,
                        help="TCP port, 0 for any free one (default 9464)")
    parser.add_argument("--tls-cert", default="", metavar="PEM", help="serve HTTPS with this certificate (chain)")
    parser.add_argument("--tls-key", default="", metavar="PEM", help="its private key (mode 0600)")
    parser.add_argument("--basic-auth-user", default="", metavar="USER", help="require HTTP basic auth as USER")
    parser.add_argument("--basic-auth-password-file", default="", metavar="FILE",
                        help="the password, first line of FILE (mode 0600)")


class ShmCollector:
    """A prometheus_client collector over one layout's shared memory (families: ``metrics.py``)."""

    def __init__(self, layout):
        self.layout = layout
        self._observer = None

    def _attach(self):
        from appliance.ops.snapshot import Observer
        from appliance.runtime.segment import SegmentError
        if self._observer is not None:
            replaced = self._observer.replaced()
            if replaced:                       # the appliance stopped or restarted: never serve a dead copy
                log.info("detaching: %s", replaced)
                self._detach()
        if self._observer is None:
            try:
                self._observer = Observer(self.layout)
            except SegmentError as exc:
                log.debug("not attached: %s", exc)
        return self._observer

    def collect(self):
        from appliance.ops import metrics
        observer = self._attach()
        if observer is None:
            yield from metrics.down()
            return
        try:
            snap = observer.snapshot()
            families = metrics.families(snap, observer.counter_infos)
        except Exception:           # a segment torn down under us: detach, report down, retry next scrape
            log.exception("scrape failed; detaching")
            self._detach()
            yield from metrics.down()
            return
        yield from families

    def _detach(self) -> None:
        if self._observer is not None:
            try:
                self._observer.close()
            finally:
                self._observer = None


def run(args: argparse.Namespace) -> int:
    import threading
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    from prometheus_client import CollectorRegistry, make_wsgi_app

    from appliance.runtime.layout import LayoutError, load_layout

    from .exporter_security import Exposure, ExposureError, basic_auth, check_exposure, load_password, tls_context

    logging.basicConfig(level=logging.INFO, format="%(asctime)s exporter[%(process)d] %(levelname)s %(message)s")
    exposure = Exposure(args.address, args.tls_cert, args.tls_key, args.basic_auth_user,
                        args.basic_auth_password_file)
    try:
        check_exposure(exposure)
        context = tls_context(exposure)
        password = load_password(exposure) if exposure.auth_user else b""
    except ExposureError as exc:
        log.error("refusing to start: %s", exc)
        return 2
    try:
        layout = load_layout(args.layout)
    except LayoutError as exc:
        log.error("%s", exc)
        return 1
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ShmCollector(layout))
    scrape_app, scraping = make_wsgi_app(registry), threading.Lock()

    def app(environ, start_response):     # one scrape at a time: the collector holds one attachment
        with scraping:
            return scrape_app(environ, start_response)
    if exposure.auth_user:
        app = basic_auth(app, exposure.auth_user, password)

    class Server(ThreadingMixIn, WSGIServer):
        daemon_threads = True             # a slow or silent client (or TLS handshake) holds only its thread

    class QuietHandler(WSGIRequestHandler):
        timeout = 10                      # a client that connects and says nothing cannot hold the server

        def log_message(self, *args):     # one line per scrape would drown the log
            pass

    try:
        server = make_server(args.address, args.port, app, server_class=Server, handler_class=QuietHandler)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", args.address, args.port, exc.strerror)
        return 1
    # one line, not a traceback, for a client that fails the TLS handshake or times out
    server.handle_error = lambda request, address: log.info("request from %s failed: %s", address[0],
                                                           sys.exc_info()[1])
    if context is not None:               # the handshake runs in the handler, under its timeout
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    log.info("serving metrics for layout %s on %s://%s:%d/metrics%s", args.layout,
             "https" if context is not None else "http", args.address, server.server_port,
             f" (basic auth as {exposure.auth_user})" if exposure.auth_user else "")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))     # leave serve_forever through the finally
    faulthandler.register(signal.SIGUSR1, all_threads=True)    # kill -USR1: every thread's stack to the log
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
