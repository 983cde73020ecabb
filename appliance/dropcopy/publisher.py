"""The drop copy's loop: journal records to JetStream, exactly once, in order, across restarts.

Every journal record becomes one JSON event (the audit trail's columns, ``oms/audit.py``, plus the
appliance and the trading day) published on ``appliance.<name>.events`` with the message id
``<name>:<trading day>:<journal sequence>`` (``DropCopyConfig.message_id``). The stream is the
record of what was delivered: at every (re)connection the drop copy asks it for the last message
on its subject and resumes after that one, and JetStream drops a message whose id it already holds
(within the stream's duplicate window), so neither a restart nor a lost connection loses or
doubles an event.

Events go out on one connection, in journal order, each with its own reply subject
(``<inbox>.<n>``, n counting the session's events), without waiting for the ones before them to be
acknowledged: at most ``WINDOW_BATCHES`` batches of ``batch`` events are in flight (``_Window``), and
the journal is read on while JetStream stores and acknowledges the earlier ones. Every event still
gets its own acknowledgement, taken in publish order: the stream's record of what it holds is exact.
A missing (none for ``ACK_TIMEOUT_S`` with events in flight) or negative acknowledgement, a lost
connection, NATS unreachable: the connection is dropped, the drop copy waits (``retry``: doubling
up to the maximum) and starts over from what the stream holds (events whose acknowledgements were
lost with the connection are in the stream, or published again; their message ids make a second
copy a duplicate the stream drops). The OMS never waits for any of this: the drop copy only reads
the journal file.

Lag (``Stats``): the journal's records not yet acknowledged by the stream, and how long ago the
oldest of them was journaled (microseconds; 0 when nothing is behind).
"""
from __future__ import annotations

import asyncio
import collections
import json
import logging
import re
import ssl
import time
from dataclasses import dataclass

from appliance.dropcopy.config import DropCopyConfig, read_credentials
from appliance.dropcopy.event_json import encode as encode_event
from appliance.dropcopy.firm import COMMANDS_SUBJECT, FirmLink
from appliance.dropcopy.tail import JournalTail
from appliance.oms.audit import AuditTrail
from appliance.oms.journal_format import JournalError, JournalRecord
from appliance.oms.journal_records import RecordType

log = logging.getLogger("appliance.dropcopy")

ACK_TIMEOUT_S = 5.0              # events in flight and no acknowledgement for this long: a new session
ACK_POLL_S = 0.05                # how often the connection is looked at while the window is full
WINDOW_BATCHES = 4               # events in flight (published, not yet acknowledged): at most this many batches
CONNECT_TIMEOUT_S = 2
IDLE_POLL_S = (0.0005, 0.002)    # the journal is looked at this often when nothing is new: the first
QUICK_S = 0.02                   # for this long after records came (an active OMS: the lag), then the second
LAG_PERIOD_S = 0.1
DRAIN_S = 3.0                    # at a stop, what the journal holds is published for at most this long
# the events, the marks and the hub's commands: the firm's record, from which a restarted hub
# rebuilds its peak (marks) and what it already fired or an operator accepted (commands)
STREAM_SUBJECTS = ("appliance.*.events", "appliance.*.marks", COMMANDS_SUBJECT)


class DropCopyError(RuntimeError):
    """Something that ends a connection's session (the loop reconnects after its backoff)."""


@dataclass
class Stats:
    """What the drop copy has done (read by the agent's duty cycle into shared-memory counters)."""
    published: int = 0           # events acknowledged by the stream as new
    duplicates: int = 0          # acknowledged as already held (a resend after a lost acknowledgement)
    unreadable: int = 0          # journal records that could not be read: counted, logged and skipped
    publish_errors: int = 0      # sessions ended by a failed publish, a lost connection or NATS unreachable
    connects: int = 0            # sessions started (a connection with the stream found or made)
    connected: int = 0           # 1 while a session runs
    last_sequence: int = 0       # the last journal sequence the stream holds for us (this trading day)
    lag_records: int = 0
    lag_us: int = 0
    firm_commands: int = 0       # firm commands from the risk hub handed to the supervisor
    firm_refused: int = 0        # ... that the supervisor refused or did not answer
    firm_garbage: int = 0        # messages on firm.commands or firm.heartbeat that were not one: dropped
    hub_silent: int = 0          # 1 while the risk hub's heartbeat is not heard (params.firm.commands)
    hub_silences: int = 0        # times it fell silent for longer than heartbeat_timeout_ms
    marks_published: int = 0


def event_of(config: DropCopyConfig, audit: AuditTrail, record: JournalRecord, day: int) -> bytes | None:
    """One record's JSON event, or None when its payload cannot be read (unknown type, too short)."""
    row = audit.row(record)
    if row is None or row["event"] == "UNREADABLE" or row["record"].startswith("TYPE_"):
        return None
    row["appliance"] = config.appliance
    row["trading_day"] = day
    return encode_event(row)


_ID = re.compile(r"([A-Za-z0-9_-]{1,64}):(\d{1,10}):(\d{1,19})")


def parse_message_id(message_id: str, appliance: str) -> tuple[int, int]:
    """(trading day, sequence) of one of our message ids; DropCopyError for anything else (the
    stream is read back: what it says is checked, never trusted blindly)."""
    match = _ID.fullmatch(message_id or "")
    if match is None or match.group(1) != appliance:
        raise DropCopyError(f"the stream's last message on our subject has message id {message_id[:80]!r}, "
                            f"not one of ours ({appliance}:<day>:<sequence>): refusing to guess where to resume")
    return int(match.group(2)), int(match.group(3))


def run_loop(coroutine):
    """Run the drop copy's or the risk hub's coroutine to its end on a uvloop event loop (a
    dependency, as for the exchange: nats-py's socket reads and the loop's scheduling of every
    event cost less there); the standard loop if it is missing."""
    try:
        import uvloop
    except ImportError:                   # pragma: no cover - uvloop is a dependency
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


class NatsSettingsError(RuntimeError):
    """The credentials file cannot be used (not private, unreadable): said at the connection."""


async def connect_nats(config, name: str):
    """One connection to ``config.url`` (the drop copy's or the risk hub's settings: url,
    credentials, tls_*), one attempt with no reconnects of its own: the caller's loop reconnects
    and resumes from what the stream holds."""
    import nats

    async def quiet(exc):                # nats-py logs every error itself by default
        log.debug("nats: %s", exc)
    options = dict(servers=config.url.split(","), connect_timeout=CONNECT_TIMEOUT_S, allow_reconnect=False,
                   max_reconnect_attempts=1, reconnect_time_wait=0, error_cb=quiet, name=name)
    if config.credentials:               # read at every connection: a rotated file is picked up
        from nats.aio.client import RawCredentials
        from appliance.runtime.private_file import PrivateFileError
        try:
            options["user_credentials"] = RawCredentials(read_credentials(config))
        except PrivateFileError as exc:
            raise NatsSettingsError(str(exc)) from None
    context = tls_context(config)
    if context is not None:
        options["tls"] = context
    return await asyncio.wait_for(nats.connect(**options), 3 * CONNECT_TIMEOUT_S)


def tls_context(config) -> ssl.SSLContext | None:
    if not (any(url.startswith("tls://") for url in config.url.split(",")) or config.tls_ca or config.tls_cert):
        return None
    context = ssl.create_default_context(cafile=config.tls_ca or None)
    if config.tls_cert:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    return context


class DropCopy:
    """Tails the journal and publishes it; ``run()`` until ``stop()``."""

    def __init__(self, config: DropCopyConfig, symbols: list[str] | None = None, *,
                 control_socket: str | None = None, marks=None):
        """``control_socket``: the supervisor's, where firm commands go; ``marks()``: symbol ->
        mark price, published every ``firm.marks_ms`` (``dropcopy/firm.py``)."""
        self.config = config
        self.tail = JournalTail(config.journal)
        self.audit = AuditTrail(symbols)
        self.stats = Stats()
        self.firm = FirmLink(config, self.stats, control_socket, marks)
        self._stopping: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested = False
        self._problem = ""               # the kind of the last trouble warned about ("" while fine)
        self._done: tuple = (None, 0)    # (day, sequence) of the last record the stream has or that was skipped
        self._window: _Window | None = None      # the session's events in flight (the last session's after it)

    # ------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """From any thread: the loop ends once the journal's records are in the stream (for at
        most ``DRAIN_S``: the OMS stops first, so its last records are published at ``down``)."""
        self._stop_requested = True      # seen by run() if its loop is not there yet
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None:
            loop.call_soon_threadsafe(stopping.set)

    async def run(self) -> None:
        self._stopping = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._stop_requested:
            self._stopping.set()
        lag = asyncio.ensure_future(self._measure_lag())
        watchdog = asyncio.ensure_future(self.firm.watch())
        backoff_ms = self.config.retry_initial_ms
        try:
            while not self._stopping.is_set():
                nc = None
                connects = self.stats.connects
                try:
                    nc = await self._connect()
                    await self._session(nc)
                except Exception as exc:     # nats-py's errors, OSError, timeouts, DropCopyError, JournalError
                    self.stats.publish_errors += 1
                    self._trouble(exc)
                finally:
                    self.stats.connected = 0
                    if nc is not None:
                        await _close_quietly(nc)
                if self.stats.connects > connects:
                    backoff_ms = self.config.retry_initial_ms    # it worked for a while: retry soon
                if not self._stopping.is_set():
                    await self._wait(backoff_ms / 1000)
                    backoff_ms = min(self.config.retry_max_ms, backoff_ms * 2)
        finally:
            lag.cancel()
            watchdog.cancel()
            self.tail.close()

    def _trouble(self, exc: Exception) -> None:
        """One warning per kind of trouble (not one per retry), until a session starts again."""
        why = str(exc) if isinstance(exc, (DropCopyError, JournalError)) else f"{type(exc).__name__}: {exc}"
        kind = why.split(":")[0]
        if kind != self._problem:
            log.warning("drop copy to %s: %s; the appliance keeps trading, retrying with backoff up to %d ms",
                        self.config.url, why, self.config.retry_max_ms)
            self._problem = kind

    async def _wait(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    # ------------------------------------------------------------------ one connection

    async def _connect(self):
        try:
            return await connect_nats(self.config, f"dropcopy-{self.config.appliance}")
        except NatsSettingsError as exc:
            raise DropCopyError(str(exc)) from None

    async def _session(self, nc) -> None:
        js = nc.jetstream(timeout=ACK_TIMEOUT_S)
        await self._ensure_stream(js)
        day, last = await self._last_in_stream(js)
        self.stats.last_sequence = last
        self.tail.seek(day, last, history=self._remember)
        if day is not None and day == self.tail.day and last > self.tail.expected - 1:
            # fail closed: resuming there would leave records out of the firm's record for good
            raise DropCopyError(f"the stream says it holds record {last} of day {day} of {self.config.appliance}, "
                                f"but the journal {self.config.journal} ends at record {self.tail.expected - 1}: "
                                "another publisher on our subject, or a journal replaced; not publishing")
        self._done, self._window = (day, last), None
        self.stats.connects += 1
        self.stats.connected = 1
        if self._problem:
            log.info("drop copy publishing again (after: %s)", self._problem)
            self._problem = ""
        log.info("drop copy connected to %s, stream %s, subject %s: %s", self.config.url, self.config.stream,
                 self.config.subject, f"resuming after record {last} of day {day}" if day else
                 "nothing of ours in the stream yet: from the journal's first record")
        inbox = nc.new_inbox()
        window = self._window = _Window(self.config.stream, self.stats, self.config.batch * WINDOW_BATCHES,
                                        (day, last))
        acks = await nc.subscribe(inbox + ".*", cb=window.on_message)
        firm = await self.firm.attach(nc)
        marks = asyncio.ensure_future(self.firm.publish_marks(nc))
        try:
            drain_until = None
            quick_until = 0.0
            while True:
                if drain_until is None and self._stopping.is_set():
                    drain_until = time.monotonic() + DRAIN_S
                window.check(nc)
                if window.in_flight > window.limit - self.config.batch:
                    await window.wait(ACK_POLL_S)         # full: acknowledgements first
                    continue
                records = self.tail.poll(self.config.batch)
                self.stats.unreadable = self.tail.unreadable
                if not records:
                    if drain_until is not None and (not window.entries or time.monotonic() > drain_until):
                        if window.entries:
                            log.warning("stopping with %d events unacknowledged: the next start publishes "
                                        "what the stream does not hold", window.in_flight)
                        return                   # stopping, and the stream has the whole journal
                    if not nc.is_connected:
                        raise DropCopyError("the connection to NATS was lost")
                    if window.entries:
                        await window.wait(IDLE_POLL_S[0])
                    else:
                        await asyncio.sleep(IDLE_POLL_S[time.monotonic() > quick_until])
                    continue
                quick_until = time.monotonic() + QUICK_S
                if drain_until is not None and time.monotonic() > drain_until:
                    log.warning("stopping with journal records from %d on not yet in the stream: the next "
                                "start publishes them", records[0].sequence)
                    return
                await self._publish(nc, window, inbox, records)
                await asyncio.sleep(0)           # the client's flusher writes them, acknowledgements come in
        finally:
            marks.cancel()
            for sub in (acks, *firm):
                await _unsubscribe_quietly(sub)
            self._done = window.done

    def _remember(self, record: JournalRecord) -> None:
        """A record already in the stream (before the resume point): the audit trail learns the
        orders its later venue messages name."""
        if record.type == RecordType.ORDER_SENT:
            self.audit.row(record)

    async def _ensure_stream(self, js) -> None:
        from nats.js.api import StorageType
        from nats.js.errors import NotFoundError
        try:
            info = await js.stream_info(self.config.stream)
        except NotFoundError:
            await js.add_stream(name=self.config.stream, subjects=list(STREAM_SUBJECTS), storage=StorageType.FILE,
                                duplicate_window=float(self.config.duplicate_window_s),
                                num_replicas=self.config.replicas)
            log.info("stream %s created (subjects %s, file storage, duplicate window %d s, %d replicas)",
                     self.config.stream, ", ".join(STREAM_SUBJECTS), self.config.duplicate_window_s,
                     self.config.replicas)
            return
        subjects = info.config.subjects or []
        if not any(covers(pattern, self.config.subject) for pattern in subjects):
            raise DropCopyError(f"stream {self.config.stream} does not take {self.config.subject} "
                                f"(its subjects: {', '.join(subjects) or 'none'})")
        missing = [pattern for pattern, subject in ((STREAM_SUBJECTS[1], self.config.marks_subject),
                                                    (STREAM_SUBJECTS[2], COMMANDS_SUBJECT))
                   if not any(covers(have, subject) for have in subjects)]
        if missing:        # a stream made before they were kept: a restarted hub would lose its peak and commands
            info.config.subjects = [*subjects, *missing]
            await js.update_stream(info.config)
            log.info("stream %s now keeps %s too", self.config.stream, ", ".join(missing))

    async def _last_in_stream(self, js) -> tuple[int | None, int]:
        """(trading day, journal sequence) of the last event the stream holds for us, (None, 0) if none."""
        from nats.js.errors import NotFoundError
        try:
            message = await js.get_last_msg(self.config.stream, self.config.subject)
        except NotFoundError:
            return None, 0
        message_id = (message.headers or {}).get("Nats-Msg-Id", "")
        return parse_message_id(message_id, self.config.appliance)

    async def _publish(self, nc, window: "_Window", inbox: str, records: list[JournalRecord]) -> None:
        """Every readable record published in order, into the window (its acknowledgements come later)."""
        c, day = self.config, self.tail.day
        subject, confirmed = c.subject, day == window.confirmed_day
        for record in records:
            sequence = record.sequence
            if confirmed and sequence <= self.stats.last_sequence:
                window.skip(day, sequence, record.timestamp_ns)   # the stream has it (the journal read again)
                continue
            data = event_of(c, self.audit, record, day)
            if data is None:
                self.tail.count_unreadable(sequence, f"record {sequence} (type {record.type}, "
                                                     f"{len(record.payload)} bytes) cannot be read")
                window.skip(day, sequence, record.timestamp_ns)
                continue
            await nc.publish(subject, data, reply=f"{inbox}.{window.sent(day, sequence, record.timestamp_ns)}",
                             headers={"Nats-Msg-Id": c.message_id(day, sequence)})
        self.stats.unreadable = self.tail.unreadable

    # ------------------------------------------------------------------ lag

    async def _measure_lag(self) -> None:
        said = ""
        while True:
            try:
                self.measure_lag()
            except Exception as exc:     # a look that failed: the next one may not (never the task's end)
                if str(exc) != said:
                    log.warning("drop copy: the lag could not be measured: %s", exc, exc_info=True)
                    said = str(exc)
            await asyncio.sleep(LAG_PERIOD_S)

    def measure_lag(self, now_ns: int | None = None) -> None:
        """Records of the journal the stream does not have yet (read and in flight or lost with a
        connection, or not read yet) and how long ago the oldest of them was journaled."""
        self.tail.ensure_open()
        waiting, first_ns = self.tail.pending()
        window = self._window
        done_day, done = window.done if window is not None else self._done
        read = self.tail.expected - 1
        behind = max(0, read - done) if done_day == self.tail.day else read
        unacked_first_ns = window.oldest_ns() if window is not None else 0
        oldest = (unacked_first_ns or first_ns) if behind else first_ns
        self.stats.lag_records = behind + waiting
        now_ns = time.time_ns() if now_ns is None else now_ns
        self.stats.lag_us = max(0, now_ns - oldest) // 1000 if self.stats.lag_records and oldest else 0


class _Window:
    """The session's events in journal order from the oldest not yet acknowledged: each published
    one waits for its PubAck (taken by the reply subscription's callback, ``inbox.<n>``), a record
    not published (unreadable, or one the stream has) only for those before it. ``done``: (day,
    sequence) of the last record with nothing before it outstanding; ``stats.last_sequence``: the
    last of those the stream acknowledged. An acknowledgement from another stream than ours (a
    stream created later that took our subject) is a refusal: checked here rather than with a
    ``Nats-Expected-Stream`` header on every event, a header the risk hub would parse again with
    each one."""

    def __init__(self, stream: str, stats: Stats, limit: int, done: tuple):
        """``done``: (day, sequence) of the last record the stream holds (where the session resumes)."""
        self.stream, self.stats, self.limit = stream, stats, limit
        self.done = done
        self.confirmed_day = done[0]      # the trading day of stats.last_sequence
        self.entries: collections.deque = collections.deque()   # (day, sequence, timestamp ns, n or -1)
        self.acked: set[int] = set()      # n acknowledged before an older one (out of order)
        self.next = 0                     # the next event's n
        self.in_flight = 0                # published, not yet acknowledged
        self.refused: tuple[int, bytes] | None = None           # (journal sequence, what the stream said)
        self.progress = time.monotonic()  # the last acknowledgement (or the first event put in flight)
        self.wake = asyncio.Event()
        self._ack = re.compile(rb'\{\s?"stream"\s?:\s?"' + re.escape(stream.encode()) +   # nats-server's PubAck, e.g.
                               rb'"\s?,\s?(?:"domain"\s?:\s?"[\w.-]*"\s?,\s?)?"seq"\s?:\s?\d{1,20}'   # {"stream":"S", "seq":1}
                               rb'(\s?,\s?"duplicate"\s?:\s?true)?\s?\}')                     # ,"duplicate": true

    def sent(self, day: int, sequence: int, timestamp_ns: int) -> int:
        """One event published: its n (the last token of its reply subject)."""
        n = self.next
        self.next = n + 1
        if not self.in_flight:
            self.progress = time.monotonic()
        self.in_flight += 1
        self.entries.append((day, sequence, timestamp_ns, n))
        return n

    def skip(self, day: int, sequence: int, timestamp_ns: int) -> None:
        """A record not published: done once every event before it is."""
        self.entries.append((day, sequence, timestamp_ns, -1))
        self._advance()

    def oldest_ns(self) -> int:
        """The journal timestamp of the oldest record not done (0: none)."""
        return self.entries[0][2] if self.entries else 0

    def check(self, nc) -> None:
        """DropCopyError when the session cannot go on: a refusal, the connection lost with events
        in flight, no acknowledgement for ``ACK_TIMEOUT_S``."""
        if self.refused is not None:
            sequence, said = self.refused
            raise DropCopyError(f"record {sequence} refused by the stream: {said!r}")
        if self.in_flight and not nc.is_connected:
            raise DropCopyError(f"the connection to NATS was lost with {self.in_flight} events unacknowledged")
        if self.in_flight and time.monotonic() - self.progress > ACK_TIMEOUT_S:
            raise DropCopyError(f"{self.in_flight} events unacknowledged, none acknowledged for {ACK_TIMEOUT_S:g} s")

    async def wait(self, seconds: float) -> None:
        """Until an acknowledgement or a refusal, for at most ``seconds``."""
        self.wake.clear()
        try:
            await asyncio.wait_for(self.wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def on_message(self, message) -> None:
        n = _index_of(message.subject)
        if not self.entries or not self.entries[0][3] <= n < self.next or n in self.acked:
            return                        # late, repeated, or not one of ours
        data = message.data
        usual = self._ack.fullmatch(data)
        if usual is not None:                               # the PubAck's usual bytes: no JSON parse
            duplicate = usual.group(1) is not None
        else:
            try:
                ack = json.loads(data)
            except ValueError:
                ack = None
            if not isinstance(ack, dict) or "error" in ack or "seq" not in ack or ack.get("stream") != self.stream:
                sequence = next((e[1] for e in self.entries if e[3] == n), -1)
                self.refused = (sequence, bytes(data[:200]))
                self.wake.set()
                return
            duplicate = bool(ack.get("duplicate"))
        if duplicate:
            self.stats.duplicates += 1
        else:
            self.stats.published += 1
        self.in_flight -= 1
        self.progress = time.monotonic()
        self.acked.add(n)
        self._advance()
        self.wake.set()

    def _advance(self) -> None:
        entries, acked = self.entries, self.acked
        last = None
        while entries:
            n = entries[0][3]
            if n >= 0:
                if n not in acked:
                    break
                acked.discard(n)
                last = entries[0]
            self.done = entries.popleft()[:2]
        if last is not None:
            self.stats.last_sequence, self.confirmed_day = last[1], last[0]


def covers(pattern: str, subject: str) -> bool:
    """Whether a NATS subject pattern (``*`` one token, ``>`` the rest) matches ``subject``."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def _index_of(subject: str) -> int:
    try:
        return int(subject.rsplit(".", 1)[1])
    except (IndexError, ValueError):
        return -1


async def _close_quietly(nc) -> None:
    try:
        await asyncio.wait_for(nc.close(), 2)
    except Exception:
        pass


async def _unsubscribe_quietly(sub) -> None:
    try:
        await sub.unsubscribe()
    except Exception:
        pass
