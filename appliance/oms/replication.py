"""The primary OMS's side of journal replication: every journal record streamed to the hot standby.

The primary listens on ``replication.primary`` (``config.ReplicationConfig``). One standby at a
time: a connection counts once its first frame is a valid SUBSCRIBE saying from which sequence it
needs records (``replication_wire``), and then replaces the current standby (one that reconnected
before its old connection was seen to die); it is sent the journal's own bytes from there on, as
they are appended: nothing is re-encoded, the records carry the journal's CRC. All I/O is non-blocking and polled by the OMS's
duty cycle (``ReplicationPrimary.pump`` after each cycle's work, ``maintain`` from the slow path):
replication never blocks the OMS.

No hook sits in the journal's append: the primary compares the journal's tail with what it has
sent and sends the difference (``Journal.mapping``, read only). The one hook on the send path is
``SyncSends`` in sync mode: the sender's view of the venue session (its ``send_packet`` and
``direct_fd``), which holds an order's bytes until the standby has acknowledged the record that
covers it. It first waits for that acknowledgement where it sends, polling (``ack_spin_us``,
``ReplicationPrimary.await_ack``), unless more orders wait behind it; what is not acknowledged
then is held and released by the duty cycle.
"""
from __future__ import annotations

import bisect
import errno
import logging
import socket
import time
from collections import deque

from appliance.messages.codes import Action
from appliance.oms import replication_wire as rw
from appliance.oms.replication_status import MODE_CODES, TRANSPORT_CODES
from appliance.oms.journal_format import FILE_HEADER_SIZE, RECORD_HEADER, RECORD_HEADER_SIZE, padded
from appliance.runtime.counters import CounterKind

log = logging.getLogger("appliance.oms.replication")

_LENGTH_AT = RECORD_HEADER.offset_of["length"]
MAX_OUT_BYTES = 4 << 20           # a standby this far behind on reading is dropped (it reconnects and catches up)
MAX_READS = 8


class ReplicationError(RuntimeError):
    """The primary cannot replicate (it cannot listen): the OMS does not start."""


class ReplicationPrimary:
    """``listener``: where standbys come from: None listens on TCP at ``config.primary``; the same
    box's rings give a ``replication_shm.ShmListener`` (connections shaped like sockets)."""

    def __init__(self, config, journal, allocate=None, listener=None):
        self.config = config
        self.journal = journal
        self.heartbeat_ns = config.heartbeat_ms * 1_000_000
        self.peer_timeout_ns = config.peer_timeout_ms * 1_000_000
        self._header = bytes(journal.mapping[:FILE_HEADER_SIZE])
        # (sequence, offset) of records whose place is known: catch-up starts from the nearest one
        self._marks_seq = [1, journal.next_sequence]
        self._marks_offset = [FILE_HEADER_SIZE, journal.used_bytes]
        if listener is None:
            try:
                listener = socket.create_server((config.primary_host, config.primary_port), reuse_port=False)
            except OSError as exc:
                raise ReplicationError(f"cannot listen for the standby on {config.primary_host}:"
                                       f"{config.primary_port}: {exc.strerror or exc}") from None
        listener.setblocking(False)
        self.listener = listener
        self.address = listener.getsockname()
        self.sock: socket.socket | None = None
        self._candidate = None            # (socket, peer, reader, accepted at) until it subscribes
        self.peer = ""
        self._reader: rw.FrameReader | None = None
        self._out = bytearray()
        self.subscribed = False
        self.cursor_offset = 0            # the next journal byte to send
        self.cursor_sequence = 0          # the sequence of the record there
        self.acked = 0                    # the last sequence the standby acknowledged (this connection or before)
        self._last_received_ns = 0
        self._last_sent_ns = 0
        self.lost_mono_ns = time.monotonic_ns()    # when the standby was last lost (or the primary started)
        self.connections = 0
        self.bad_frames = 0
        self.refused = 0                  # connections closed before they subscribed
        self.disconnects = 0
        self.records_sent = 0
        self._probe: tuple[int, int] | None = None   # (last sequence, sent at) of the oldest unacknowledged send
        self.ack_rtt_ns = 0               # the last send -> acknowledgement round trip
        self.ack_rtt_at_ns = 0            # when it ended (monotonic): the bench splits an order's span with it
        self.last_error = ""
        self._counters = _Counters(allocate) if allocate is not None else None

    # ------------------------------------------------------------------ state

    @property
    def connected(self) -> bool:
        return self.sock is not None

    @property
    def last_sequence(self) -> int:
        return self.journal.next_sequence - 1

    @property
    def caught_up(self) -> bool:
        """The standby holds every record appended so far."""
        return self.subscribed and self.acked >= self.journal.next_sequence - 1

    @property
    def lag_records(self) -> int:
        return max(0, self.journal.next_sequence - 1 - self.acked)

    def lag_ns(self, now_mono: int) -> int:
        """How long the oldest record the standby has not acknowledged has been on its way (0: none)."""
        probe = self._probe
        return max(0, now_mono - probe[1]) if probe is not None and self.subscribed else 0

    def fileno(self) -> int | None:
        """The connection's descriptor to poll() on (None: no connection, or the shm rings, polled)."""
        return self.sock.fileno() if self.sock is not None else None

    # ------------------------------------------------------------------ the duty cycle

    def pump(self, now_mono: int, read: bool = True) -> int:
        """Send what the journal has that the standby was not sent; read its acknowledgements."""
        if self.sock is None:
            return 0
        work = 0
        if read:
            work += self._read(now_mono)
        if self._out and self.sock is not None:
            self._send(b"", now_mono)                # what the kernel did not take last time, first
        if self.subscribed and self.cursor_offset < self.journal.used_bytes and self.sock is not None:
            work += self._stream(now_mono)
        return work

    def maintain(self, now_mono: int) -> int:
        """The slow path: accept a standby, heartbeats, the peer timeout, the counters."""
        work = self._accept(now_mono)
        sock = self.sock
        if sock is not None:
            work += self.pump(now_mono)
            if self.sock is not None and now_mono - self._last_received_ns > self.peer_timeout_ns:
                self._drop(now_mono, f"standby silent for {(now_mono - self._last_received_ns) / 1e9:.3f} s")
            elif self.sock is not None and now_mono - self._last_sent_ns >= self.heartbeat_ns:
                self._send(rw.beat(self.journal.next_sequence - 1, time.time_ns()), now_mono)
        if self._counters is not None:
            self._counters.publish(self)
        return work

    def close(self) -> None:
        self._close_socket()
        if self._candidate is not None:
            self._candidate[0].close()
            self._candidate = None
        try:
            self.listener.close()
        except OSError:
            pass

    def await_ack(self, sequence: int, until_ns: int, interrupted=None) -> bool:
        """Poll for the standby's acknowledgement of ``sequence`` until ``until_ns`` (monotonic) or until
        ``interrupted()`` says other work waits: True once it holds it. The cheapest wait for an ack due
        within microseconds: no duty cycle around it, the ring looked at before any read (shm), a
        non-blocking receive (TCP: a sleep in poll() would cost the OMS a wake-up)."""
        clock = time.monotonic_ns
        readable = getattr(self.sock, "readable", None)        # the shm connection's look at its ring
        while self.acked < sequence:
            if self.sock is None or not self.subscribed:
                return False
            now = clock()
            if now >= until_ns or (interrupted is not None and interrupted()):
                return False
            if readable is None or readable():
                self._read(now)
        return True

    # ------------------------------------------------------------------ connection

    def _accept(self, now_mono: int) -> int:
        """A new connection is a candidate until its first frame, a valid SUBSCRIBE, makes it the
        standby (replacing the current one: a standby reconnecting before its old connection was
        seen to die). Anything else on it is counted and closes it: bytes from whoever can reach
        the port never disturb the standby that is streaming."""
        work = 0
        try:
            sock, address = self.listener.accept()
        except (BlockingIOError, InterruptedError):
            sock = None
        except OSError as exc:
            self.last_error = f"accept: {exc.strerror or exc}"
            sock = None
        if sock is not None:
            if self._candidate is not None:
                self._close_candidate("a newer connection came")
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._candidate = (sock, f"{address[0]}:{address[1]}", rw.FrameReader((rw.SUBSCRIBE,)), now_mono)
            work += 1
        if self._candidate is not None:
            work += self._read_candidate(now_mono)
        return work

    def _read_candidate(self, now_mono: int) -> int:
        sock, peer, reader, since = self._candidate
        try:
            data = sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            if now_mono - since > self.peer_timeout_ns:
                self._close_candidate("no SUBSCRIBE in time")
            return 0
        except OSError as exc:
            self._close_candidate(f"receive: {exc.strerror or exc}")
            return 0
        if not data:
            self._close_candidate("closed before subscribing")
            return 0
        try:
            frames = reader.feed(data)
        except rw.ReplicationProtocolError as exc:
            self.bad_frames += 1
            self._close_candidate(f"protocol error: {exc}")
            return 0
        if not frames:
            return 0
        self._candidate = None
        if self.sock is not None:
            log.warning("a new standby connection from %s replaces the one from %s", peer, self.peer)
            self._drop(now_mono, "replaced by a new connection")
        self.sock = sock
        self.peer = peer
        self._reader = rw.FrameReader((rw.SUBSCRIBE, rw.ACK))
        self._out.clear()
        self._last_received_ns = self._last_sent_ns = now_mono
        self.connections += 1
        log.info("standby connected from %s", peer)
        kind, body = frames[0]
        if self._subscribe(now_mono, *rw.parse_subscribe(body)) and len(frames) > 1:
            self._drop(now_mono, "frames after SUBSCRIBE before HELLO")
        return 1

    def _close_candidate(self, why: str) -> None:
        sock, peer, _reader, _since = self._candidate
        self._candidate = None
        self.refused += 1
        log.warning("replication connection from %s closed: %s", peer, why)
        try:
            sock.close()
        except OSError:
            pass

    def _close_socket(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self.subscribed = False
        self._probe = None
        self._out.clear()

    def _drop(self, now_mono: int, why: str) -> None:
        log.warning("standby %s: %s; closing the replication connection", self.peer, why)
        self.last_error = why
        self.disconnects += 1
        self._close_socket()
        self.lost_mono_ns = now_mono

    # ------------------------------------------------------------------ reading

    def _read(self, now_mono: int) -> int:
        frames = []
        for _ in range(MAX_READS):
            try:
                data = self.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                self._drop(now_mono, f"receive: {exc.strerror or exc}")
                return 0
            if not data:
                self._drop(now_mono, "the standby closed the connection")
                return 0
            self._last_received_ns = now_mono
            try:
                frames += self._reader.feed(data)
            except rw.ReplicationProtocolError as exc:
                self.bad_frames += 1
                self._drop(now_mono, f"protocol error: {exc}")
                return 0
            if len(data) < 65536:
                break
        for kind, body in frames:
            if kind == rw.ACK:
                sequence = rw.parse_ack(body)
                if not self.subscribed or sequence >= self.cursor_sequence:
                    self.bad_frames += 1
                    self._drop(now_mono, f"acknowledged sequence {sequence}, never sent")
                    return 0
                if sequence > self.acked:
                    self.acked = sequence
                    probe = self._probe
                    if probe is not None and sequence >= probe[0]:
                        now = time.monotonic_ns()
                        self.ack_rtt_ns = now - probe[1]
                        self.ack_rtt_at_ns = now
                        # records sent after the probe are on their way (since no later than now)
                        self._probe = (self.cursor_sequence - 1, now) if sequence < self.cursor_sequence - 1 else None
            elif not self._subscribe(now_mono, *rw.parse_subscribe(body)):
                return 0
        return len(frames)

    def _subscribe(self, now_mono: int, next_sequence: int, header: bytes) -> bool:
        journal = self.journal
        if header != self._header:
            next_sequence = 1                       # another journal (or none): it starts again from ours
        elif not 1 <= next_sequence <= journal.next_sequence:
            self.bad_frames += 1
            self._drop(now_mono, f"the standby asks from sequence {next_sequence}, past this journal's "
                                 f"{journal.next_sequence - 1} records: it is not this journal's standby")
            return False
        self.cursor_sequence = next_sequence
        self.cursor_offset = self._offset_of(next_sequence)
        self.acked = next_sequence - 1
        self.subscribed = True
        log.info("standby %s subscribed from sequence %d (%d records to catch up)", self.peer, next_sequence,
                 journal.next_sequence - next_sequence)
        self._send(rw.hello(self._header, next_sequence), now_mono)
        return self.sock is not None

    def _offset_of(self, sequence: int) -> int:
        """Where record ``sequence`` starts (or the tail, for the next one), walked from the nearest mark."""
        i = bisect.bisect_right(self._marks_seq, sequence) - 1
        seq, offset = self._marks_seq[i], self._marks_offset[i]
        mm = self.journal.mapping
        while seq < sequence:
            length = int.from_bytes(mm[offset + _LENGTH_AT:offset + _LENGTH_AT + 4], "little")
            offset += padded(RECORD_HEADER_SIZE + length)
            seq += 1
        return offset

    # ------------------------------------------------------------------ sending

    def _stream(self, now_mono: int) -> int:
        """RECORDS frames from the cursor to the journal's tail, while the socket takes them."""
        journal = self.journal
        mm = journal.mapping
        frames = 0
        while self.sock is not None and not self._out:
            start, tail = self.cursor_offset, journal.used_bytes
            if start >= tail:
                break
            if tail - start <= rw.RECORDS_CHUNK:
                end, sequence = tail, journal.next_sequence
            else:                                    # catching up: cut at a record boundary
                end, sequence = start, self.cursor_sequence
                while end < tail:
                    length = int.from_bytes(mm[end + _LENGTH_AT:end + _LENGTH_AT + 4], "little")
                    step = padded(RECORD_HEADER_SIZE + length)
                    if end > start and end + step - start > rw.RECORDS_CHUNK:
                        break
                    end += step
                    sequence += 1
                self._mark(sequence, end)
            body = mm[start:end]
            self.records_sent += sequence - self.cursor_sequence
            self.cursor_offset, self.cursor_sequence = end, sequence
            self._send(rw.records_header(len(body)) + body, now_mono)
            if self._probe is None:
                self._probe = (sequence - 1, time.monotonic_ns())
            frames += 1
        return frames

    def _mark(self, sequence: int, offset: int) -> None:
        if sequence > self._marks_seq[-1] + 4096:
            self._marks_seq.append(sequence)
            self._marks_offset.append(offset)

    def _send(self, data: bytes, now_mono: int) -> None:
        out = self._out
        if out:
            out += data
            data = bytes(out)
            out.clear()
        if not data:
            return
        try:
            sent = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            self._drop(now_mono, f"send: {exc.strerror or errno.errorcode.get(exc.errno, exc)}")
            return
        self._last_sent_ns = now_mono
        if sent < len(data):
            out += data[sent:]
            if len(out) > MAX_OUT_BYTES:
                self._drop(now_mono, f"{len(out)} bytes the standby has not read")


class SyncSends:
    """The venue session as the order sender sees it in sync mode: the bytes of a new order or a
    replace leave only after the standby has acknowledged the journal record that covers them
    (the ORDER_SENT just appended), so no order exists at the venue that the standby does not
    know. Held bytes wait in order; a cancel waits only behind held bytes (the wire keeps the
    order the OMS decided), never for an acknowledgement of its own.

    No acknowledgement within ``ack_limit_ms`` (or no standby subscribed for that long):
    ``close_gate`` closes the OMS's gate (NO_STANDBY: ``oms_ready`` 0, new orders refused), the held
    orders are given back as never sent (NOT_SENT, rejected to the strategy) and held cancels leave;
    ``trade`` sends what is held and goes on without waiting (counted) until the standby has caught
    up. Either way the gate or the wait returns once the standby holds every record. An OMS starts
    as without a standby (gate closed, or trading on) until its standby has caught up."""

    def __init__(self, session, journal, primary: ReplicationPrimary, gate, ack_limit_ms: int, without_standby: str,
                 allocate=None, ack_spin_us: int = 0, interrupted=None):
        self.session = session
        self.journal = journal
        self.primary = primary
        self.gate = gate
        self.limit_ns = ack_limit_ms * 1_000_000
        # an order with nothing held before it waits here for its acknowledgement this long (then it is
        # held and the duty cycle releases it), unless ``interrupted()`` says another order or a control
        # event waits: a burst's records still go out together, acknowledged together
        self.spin_ns = min(ack_spin_us * 1_000, self.limit_ns)
        self._interrupted = interrupted
        self.released_waiting = 0           # orders whose acknowledgement came while send_packet waited
        self.close_gate = without_standby == "close_gate"
        self.held: deque = deque()          # (covering sequence, held since, packet, tag)
        self.unprotected = False            # trade: sending without waiting until the standby caught up
        self.ack_timeouts = 0
        self.held_total = 0
        self.unprotected_sends = 0
        self._c_held = allocate("oms.replication.held") if allocate else None
        self._c_timeouts = allocate("oms.replication.ack_timeouts") if allocate else None
        self._c_unprotected = allocate("oms.replication.unprotected_sends") if allocate else None
        # until a standby has caught up for the first time there is none: as after losing one
        if self.close_gate:
            gate.standby_ok = False
        else:
            self.unprotected = True

    def __getattr__(self, name):            # everything but send_packet and direct_fd is the session's
        return getattr(self.session, name)

    def direct_fd(self) -> int:
        """No descriptor for the compiled order step (``order_step.py``), which would send past the
        hold: -1, so the sender gives the packed bytes to ``send_packet``; the session's own only
        while trading on without a standby with nothing held."""
        if self.unprotected and not self.held:
            fd = self.session.direct_fd()
            if fd >= 0:
                self.unprotected_sends += 1
            return fd
        return -1

    def send_packet(self, packet: bytes, now_mono: int, tag=None) -> bool:
        session = self.session
        if not session.logged_in:
            return False
        if not self.held:
            if tag is not None and tag[0] == Action.CANCEL:
                return session.send_packet(packet, now_mono, tag)
            if self.unprotected:
                self.unprotected_sends += 1
                return session.send_packet(packet, now_mono, tag)
        held = self.held
        held.append((self.journal.next_sequence - 1, now_mono, packet, tag))
        self.held_total += 1
        primary = self.primary
        primary.pump(now_mono, read=False)            # the record on its way now
        if self.spin_ns and len(held) == 1 and primary.await_ack(held[0][0], time.monotonic_ns() + self.spin_ns,
                                                                 self._interrupted):
            self.released_waiting += 1
            self._send_acked(now_mono)                   # acknowledged: the bytes leave now, from here
        return True

    def release(self, now_mono: int) -> int:
        """From the duty cycle while bytes are held: send those the standby has acknowledged."""
        held = self.held
        if not held:
            return 0
        self.primary.pump(now_mono)
        released = self._send_acked(now_mono)
        if held and now_mono - held[0][1] > self.limit_ns:
            self._without_standby(now_mono, f"no acknowledgement from the standby within {self.limit_ns // 1_000_000} ms")
        return released

    def _send_acked(self, now_mono: int) -> int:
        """The held packets the standby has acknowledged, to the session in order; how many."""
        held, acked, session = self.held, self.primary.acked, self.session
        released = 0
        while held and held[0][0] <= acked:
            _sequence, _since, packet, tag = held.popleft()
            if not session.send_packet(packet, now_mono, tag) and tag is not None:
                session.unsent.append(tag)           # never left: the slow path journals NOT_SENT
            released += 1
        return released

    def watch(self, now_mono: int) -> int:
        """The slow path: a standby missing longer than the limit trips; a caught-up one restores."""
        primary = self.primary
        if primary.caught_up:
            if self.unprotected or not self.gate.standby_ok:
                log.info("the standby holds every record again: new orders wait for its acknowledgement")
                self.unprotected = False
                self.gate.standby_ok = True
                return 1
            return 0
        if not primary.subscribed and now_mono - primary.lost_mono_ns > self.limit_ns and \
                self.gate.standby_ok and not self.unprotected:
            self._without_standby(now_mono, "no standby connected")
            return 1
        return self.release(now_mono)

    def _without_standby(self, now_mono: int, why: str) -> None:
        self.ack_timeouts += 1
        if self._c_timeouts is not None:
            self._c_timeouts.inc()
        held, session = self.held, self.session
        if self.close_gate:
            if self.gate.standby_ok:
                log.error("sync replication: %s: the gate closes (NO_STANDBY); cancels still leave", why)
            self.gate.standby_ok = False
            while held:
                _sequence, _since, packet, tag = held.popleft()
                if tag is not None and tag[0] == Action.CANCEL:
                    if not session.send_packet(packet, now_mono, tag):
                        session.unsent.append(tag)
                elif tag is not None:
                    session.unsent.append(tag)       # never left: NOT_SENT, rejected back
        else:
            if not self.unprotected:
                log.error("sync replication: %s: trading on without the standby (without_standby: trade)", why)
            self.unprotected = True
            while held:
                _sequence, _since, packet, tag = held.popleft()
                self.unprotected_sends += 1
                if not session.send_packet(packet, now_mono, tag) and tag is not None:
                    session.unsent.append(tag)

    def give_back(self) -> None:
        """Every held packet to the session's ``unsent`` (the OMS is stopping: they never leave)."""
        while self.held:
            tag = self.held.popleft()[3]
            if tag is not None:
                self.session.unsent.append(tag)

    def publish(self) -> None:
        if self._c_held is not None:
            self._c_held.set(self.held_total)
            self._c_unprotected.set(self.unprotected_sends)


class _Counters:
    def __init__(self, allocate):
        self.mode = allocate("oms.replication.mode", CounterKind.INFO)            # replication_status's codes
        self.transport = allocate("oms.replication.transport", CounterKind.INFO)
        self.standby_pid = allocate("oms.replication.standby_pid", CounterKind.INFO)   # shm: the standby's pid
        self.connected = allocate("oms.replication.connected", CounterKind.GAUGE)
        self.acked = allocate("oms.replication.acked_sequence", CounterKind.GAUGE)
        self.lag = allocate("oms.replication.lag_records", CounterKind.GAUGE)
        self.lag_ns = allocate("oms.replication.lag_ns", CounterKind.GAUGE)
        self.ack_rtt_ns = allocate("oms.replication.ack_rtt_ns", CounterKind.GAUGE)
        self.connections = allocate("oms.replication.connections")
        self.disconnects = allocate("oms.replication.disconnects")
        self.bad_frames = allocate("oms.replication.bad_frames")
        self.refused = allocate("oms.replication.refused_connections")
        self.records_sent = allocate("oms.replication.records_sent")

    def publish(self, primary: ReplicationPrimary) -> None:
        self.mode.set(MODE_CODES.get(primary.config.mode, 0))
        self.transport.set(TRANSPORT_CODES.get(primary.config.transport, 0))
        self.standby_pid.set(getattr(primary.sock, "peer_pid", 0) if primary.subscribed else 0)
        self.connected.set(1 if primary.subscribed else 0)
        self.acked.set(primary.acked)
        self.lag.set(primary.lag_records)
        self.lag_ns.set(primary.lag_ns(time.monotonic_ns()))
        self.ack_rtt_ns.set(primary.ack_rtt_ns)
        self.connections.set(primary.connections)
        self.disconnects.set(primary.disconnects)
        self.bad_frames.set(primary.bad_frames)
        self.refused.set(primary.refused)
        self.records_sent.set(primary.records_sent)
