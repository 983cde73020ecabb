"""Risk's durable state: what must survive ``appliance down`` / ``up`` and a crash of the whole box.

The shared segment (and its control words) dies with ``down``; the OMS's journal survives and
rebuilds positions, open orders and the day's realized P&L. What only risk knows is kept here, in
one small JSON file owned by the risk process (param ``state_file``, default
``run/risk-state.json`` next to the layout), one line, shown spread out and commented here::

    {
      "version": 1,
      "trading_day": 20250314,                  # runtime.trading_day_of() of the write
      "written_ns": 1741958400123456789,
      "kill": {"reason": "MANUAL", "operator": "alice", "t_ns": 1741958000000000000, "value": 0},
      "symbols_killed": {"AAPL": {"reason": "MANUAL", "operator": "carol", "t_ns": 1741958100000000000}},
      "reducing": {"operator": "erin", "t_ns": 1741958200000000000},
      "peak_pnl": 123400000                     # price units x shares; null until risk has been ready today
    }

``kill`` and ``reducing`` are null when not set; ``symbols_killed`` is keyed by symbol name (the
layout's symbol ids may change between runs; names do not).

Reading is strict: a file that is not valid JSON, has another version, a missing or unknown key,
or a value of the wrong type is a ``StateFileError`` (the agent then starts latched: fail closed).
A missing file is ``None`` (the first start).

Writing is atomic and durable: the bytes go to a temporary file in the same directory, which is
fsync'ed, renamed over the old file, and the directory fsync'ed; a crash leaves the old file or
the new one, never a mix. That costs about two disk flushes (~12 ms on this machine's ext4), so
the agent never does it on the order path: ``StateWriter`` does it on a thread of its own, and the
agent either waits for it (a latch, a reset, a state change: written before it is announced) or
not (the peak P&L, at most once a second).
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field

from appliance.config.checker import Checker, Section, shown
from appliance.messages.codes import PRICE_SCALE

STATE_VERSION = 1
_TOP_KEYS = ("version", "trading_day", "written_ns", "kill", "symbols_killed", "reducing", "peak_pnl")
_TEXT_MAX = 64                           # operator names and reasons are 16 bytes on the rings


class StateFileError(Exception):
    """The state file exists but cannot be used: ``path: reason``."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class Latch:
    """Who set a latch (or REDUCING), why, when; ``value`` is what tripped a loss limit."""
    reason: str
    operator: str
    t_ns: int
    value: int = 0


@dataclass
class DurableState:
    """What the file holds, apart from its version, day and write time."""
    kill: Latch | None = None
    symbols_killed: dict[str, Latch] = field(default_factory=dict)
    reducing: Latch | None = None            # reason "REDUCING"
    peak_pnl: int | None = None


# --------------------------------------------------------------------------- encoding

def encode(state: DurableState, trading_day: int, written_ns: int) -> bytes:
    def latch(x: Latch | None, *, value: bool = False) -> dict | None:
        if x is None:
            return None
        out = {"reason": x.reason, "operator": x.operator, "t_ns": x.t_ns}
        if value:
            out["value"] = x.value
        return out
    reducing = None if state.reducing is None else {"operator": state.reducing.operator, "t_ns": state.reducing.t_ns}
    document = {
        "version": STATE_VERSION, "trading_day": trading_day, "written_ns": written_ns,
        "kill": latch(state.kill, value=True),
        "symbols_killed": {name: latch(x) for name, x in sorted(state.symbols_killed.items())},
        "reducing": reducing, "peak_pnl": state.peak_pnl,
    }
    return (json.dumps(document) + "\n").encode("utf-8")         # one line: the C encoder (indent is ~10x slower)


def decode(data: bytes, path: str = "<state>") -> tuple[int, DurableState]:
    """(trading day, state) from the file's bytes; raises StateFileError."""
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise StateFileError(path, f"not valid JSON ({exc})") from None
    check = Checker(lambda key_path, reason, line: StateFileError(path, f"{key_path}: {reason}" if key_path
                                                                   else reason))
    if not isinstance(document, dict):
        check.fail("", "expected a JSON object")
    version = document.get("version")
    if version != STATE_VERSION:
        check.fail("", f"version {shown(version)}, this risk reads version {STATE_VERSION}")
    top = check.section(document, "", None, _TOP_KEYS, required=_TOP_KEYS)
    day = top.integer("trading_day", 1, 99991231)
    top.integer("written_ns", 0, 1 << 64)
    kill = _latch(top, "kill", ("reason", "operator", "t_ns", "value"))
    reducing = _latch(top, "reducing", ("operator", "t_ns"))
    symbols = top.get("symbols_killed")
    if not isinstance(symbols, dict):
        top.fail("symbols_killed", "expected an object keyed by symbol")
    killed = {}
    symbols_section = top.section("symbols_killed", tuple(symbols))
    for name in symbols:
        latch = _latch(symbols_section, name, ("reason", "operator", "t_ns"))
        if latch is None or not name:
            symbols_section.fail(name, "expected an object")
        killed[name] = latch
    peak = None if top.get("peak_pnl") is None else top.integer("peak_pnl", -(1 << 63), (1 << 63) - 1)
    return day, DurableState(kill=kill, symbols_killed=killed, reducing=reducing, peak_pnl=peak)


def _latch(parent: Section, key: str, keys: tuple) -> Latch | None:
    if parent.get(key) is None:
        return None
    latch = parent.section(key, keys, required=keys)
    for text in ("reason", "operator"):
        if text in latch and len(latch.string(text, empty=True)) > _TEXT_MAX:
            latch.fail(text, f"must be at most {_TEXT_MAX} characters")
    reason = latch.string("reason") if "reason" in keys else "REDUCING"
    return Latch(reason, latch.get("operator"), latch.integer("t_ns", 0, 1 << 64),
                 latch.integer("value", -(1 << 63), (1 << 63) - 1, 0))


# --------------------------------------------------------------------------- the file

def read_state(path: str) -> tuple[int, DurableState] | None:
    """(trading day, state), or None when there is no file; raises StateFileError when there is one
    that cannot be read or used."""
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    return decode(data, path)


def write_atomic(path: str, data: bytes) -> None:
    """Replace ``path`` by ``data``: temporary file, fsync, rename, fsync of the directory. Raises OSError."""
    directory = os.path.dirname(path) or "."
    temporary = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(temporary)
        raise
    os.close(fd)
    try:
        os.replace(temporary, path)
    except BaseException:
        _unlink_quietly(temporary)
        raise
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def keep_aside(path: str, suffix: str) -> str | None:
    """Copy an unusable state file to ``path.unreadable-<suffix>`` (evidence for a person); its name or None."""
    aside = f"{path}.unreadable-{suffix}"
    try:
        with open(path, "rb") as f:
            data = f.read(1 << 20)
        write_atomic(aside, data)
    except OSError:
        return None
    return aside


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class StateWriter:
    """Writes the state file on a thread of its own, the newest submitted bytes first (older ones
    not yet written are skipped: each submission is the whole state).

    ``submit`` returns at once with a sequence number; ``wait(seq, timeout_s)`` blocks (no
    spinning) until that write or a newer one is on disk (True), failed (False) or the time is
    up (None). Failures are counted in ``failures``, the last in ``last_error``.

    The thread leaves the agent's CPU and real-time class if it can: pinned next to a busy-spinning
    SCHED_FIFO agent it would otherwise never run. The fsyncs release the GIL.
    """

    def __init__(self, path: str, write=write_atomic):
        self.path = path
        self._write = write
        self._cond = threading.Condition()
        self._pending: tuple[int, bytes] | None = None
        self._seq = 0
        self.written_seq = 0
        self.failed_seq = 0
        self.failures = 0
        self.writes = 0
        self.last_error = ""
        self._busy = False
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="risk-state-writer", daemon=True)
        self._thread.start()

    def submit(self, data: bytes) -> int:
        with self._cond:
            self._seq += 1
            self._pending = (self._seq, data)
            self._cond.notify_all()
            return self._seq

    def wait(self, seq: int, timeout_s: float) -> bool | None:
        with self._cond:
            self._cond.wait_for(lambda: self.written_seq >= seq or self.failed_seq >= seq, timeout_s)
            if self.written_seq >= seq:
                return True
            if self.failed_seq >= seq:
                return False
            return None

    def write(self, data: bytes, timeout_s: float) -> bool | None:
        """Submit and wait: True on disk, False failed, None not done in time (still under way)."""
        return self.wait(self.submit(data), timeout_s)

    @property
    def idle(self) -> bool:
        """Nothing pending and nothing being written."""
        with self._cond:
            return self._pending is None and not self._busy

    def close(self, timeout_s: float = 5.0) -> None:
        """Write what is pending, then stop the thread (waiting at most ``timeout_s``)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        _leave_the_agents_cpu()
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closing)
                if self._pending is None:
                    return
                seq, data = self._pending
                self._pending = None
                self._busy = True
            try:
                self._write(self.path, data)
                error = ""
            except OSError as exc:
                error = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
            except Exception as exc:      # noqa: BLE001 - the writer must outlive any surprise; it is reported
                error = repr(exc)
            with self._cond:
                self._busy = False
                if error:
                    self.failed_seq = seq
                    self.failures += 1
                    self.last_error = error
                else:
                    self.written_seq = seq
                    self.writes += 1
                self._cond.notify_all()


def _leave_the_agents_cpu() -> None:
    try:
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    except (OSError, AttributeError):
        pass
    try:
        os.sched_setaffinity(0, range(os.cpu_count() or 1))
    except (OSError, AttributeError):
        pass


def describe(state: DurableState) -> str:
    """One line for the log: what a state file holds."""
    parts = []
    if state.kill is not None:
        k = state.kill
        parts.append(f"kill switch latched for {k.reason}{f' by {k.operator}' if k.operator else ''}")
    else:
        parts.append("kill switch not latched")
    if state.symbols_killed:
        parts.append("symbols latched: " + ", ".join(
            f"{name} (by {x.operator or '?'})" for name, x in sorted(state.symbols_killed.items())))
    if state.reducing is not None:
        parts.append(f"REDUCING (by {state.reducing.operator or '?'})")
    if state.peak_pnl is not None:
        parts.append(f"peak P&L {state.peak_pnl / PRICE_SCALE:.2f}")
    return "; ".join(parts)
