"""The drop copy's process: the publisher's event loop on a thread, its figures in shared memory.

The duty cycle only copies ``Stats`` into this process's counters (``dropcopy.*``: shown by
``appliance status``, shmtop and the Prometheus exporter like every counter) and frees the
cycles the event loop leaves (the runner turns the collector off; asyncio makes them). Nothing
here waits for NATS: the publisher's thread does, and the OMS never waits for either.
"""
from __future__ import annotations

import gc
import logging
import threading
import time

from appliance.runtime.agent import Agent, AgentContext
from appliance.runtime.counters import CounterKind
from appliance.runtime.layout import LayoutError

from .config import DropCopyConfig, DropCopyConfigError, check_secret_files, parse_dropcopy_params
from .publisher import DropCopy, run_loop

log = logging.getLogger("appliance.dropcopy")


def supervisor_socket(layout) -> str:
    """The supervisor's control socket, where firm commands go (as ``appliance kill`` finds it)."""
    from appliance.supervisor.config import layout_control_socket
    return layout_control_socket(layout)

PUBLISH_PERIOD_NS = 50_000_000
GC_PERIOD_NS = 1_000_000_000
COUNTERS = (("published", CounterKind.COUNTER), ("duplicates", CounterKind.COUNTER),
            ("unreadable", CounterKind.COUNTER), ("publish_errors", CounterKind.COUNTER),
            ("connects", CounterKind.COUNTER), ("connected", CounterKind.INFO),
            ("last_sequence", CounterKind.GAUGE), ("lag_records", CounterKind.GAUGE), ("lag_us", CounterKind.GAUGE),
            ("firm_commands", CounterKind.COUNTER), ("firm_refused", CounterKind.COUNTER),
            ("firm_garbage", CounterKind.COUNTER), ("hub_silent", CounterKind.INFO),
            ("hub_silences", CounterKind.COUNTER), ("marks_published", CounterKind.COUNTER))


class DropCopyAgent(Agent):
    name = "dropcopy"

    def __init__(self, context: AgentContext):
        """Bad settings, no URL or a secret file others may read: LayoutError here, before the
        runner starts (the process exits 2: bad configuration, not restarted)."""
        super().__init__(context)
        layout, process = context.layout, context.process
        self.config = self.load_config(layout, process)
        if not self.config.enabled:
            raise LayoutError(layout.path, f"processes.{process.name}.params.nats.url",
                              "the drop copy has no NATS server to publish to")
        self.check_params(layout, process)

    @staticmethod
    def load_config(layout, process) -> DropCopyConfig:
        try:
            return parse_dropcopy_params(process.params, layout, f"processes.{process.name}.params")
        except DropCopyConfigError as exc:
            raise LayoutError(layout.path, exc.key_path, exc.reason) from None

    @classmethod
    def check_params(cls, layout, process) -> None:
        """``appliance up`` and ``preflight``: the settings and the secret files checked before
        anything starts (a credentials file others may read is bad configuration: exit 2)."""
        config = cls.load_config(layout, process)
        if config.enabled:
            try:
                check_secret_files(config, f"processes.{process.name}.params")
            except DropCopyConfigError as exc:
                raise LayoutError(layout.path, exc.key_path, exc.reason) from None

    @classmethod
    def wanted(cls, layout, process) -> bool:
        """Started by the supervisor only when the layout names a NATS server (``nats.url``)."""
        return cls.load_config(layout, process).enabled

    def on_start(self) -> None:
        counters = self.context.counters
        self.counters = {field: counters.allocate(f"dropcopy.{field}", kind) for field, kind in COUNTERS}
        self.copy = DropCopy(self.config, list(self.context.layout.symbols),
                             control_socket=supervisor_socket(self.context.layout), marks=self._marks_reader())
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="dropcopy-publisher", daemon=True)
        self.thread.start()
        self._next_publish = self._next_gc = 0
        log.info("drop copy: journal %s to %s (stream %s, subject %s)", self.config.journal, self.config.url,
                 self.config.stream, self.config.subject)

    def _marks_reader(self):
        """symbol -> the market-state table's mark (a good book's, else its last good one; 0: none); read from the
        publisher's thread (a seqlocked read; a torn one raises and that period is skipped)."""
        layout = self.context.layout
        try:
            table = self.context.memory.market_state_reader()
        except (KeyError, LayoutError):
            return None                       # a layout without the table (a test's): no marks
        symbols = list(layout.symbols)

        def marks() -> dict:
            return {symbol: table.read(sid).mark[0] for sid, symbol in enumerate(symbols)}
        return marks

    def _loop(self) -> None:
        try:
            run_loop(self.copy.run())
        except BaseException as exc:      # noqa: BLE001 - the duty cycle raises it: the process exits, restarted
            self.failure = exc

    def do_work(self) -> int:
        now = time.monotonic_ns()
        if now < self._next_publish:
            return 0
        self._next_publish = now + PUBLISH_PERIOD_NS
        if not self.thread.is_alive():
            raise RuntimeError(f"the drop copy's publisher stopped: {self.failure!r}")
        stats = self.copy.stats
        for field, counter in self.counters.items():
            counter.set(getattr(stats, field))
        if now >= self._next_gc:
            self._next_gc = now + GC_PERIOD_NS
            gc.collect()
        return 1

    def on_close(self) -> None:
        copy = getattr(self, "copy", None)
        if copy is not None:
            copy.stop()
            self.thread.join(10)
