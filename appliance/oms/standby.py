"""The hot standby OMS: the primary's journal, record for record, and the order state it makes.

A process of its own (``appliance oms-standby --layout L``, ``standby_cli.py``), not a process of
the layout: it attaches no shared memory and holds no venue session, so it can run on this box or
on another one with the same layout file. It connects to the primary's replication address
(``processes.oms.params.replication.primary``), says from which sequence it needs records
(``replication_wire`` SUBSCRIBE: after a reconnect, the one after the last it wrote), and for each
RECORDS frame:

1. checks every record with the journal's own checks (sequence in order, length, CRC-32C:
   ``journal_format.whole_from``): a bad frame closes the connection (counted) and the standby
   reconnects and asks again;
2. copies the records' bytes to its own journal (``replication.standby_journal``,
   ``Journal.append_copies``): the same bytes at the same offsets, so the file is byte-identical
   to the primary's up to the last acknowledged sequence (the file header is the primary's, sent
   in HELLO; a standby journal with another header is archived and a new one started);
3. acknowledges the last sequence (ACK: the journal holds them), which in sync mode lets the
   primary's order leave;
4. then reads the records back from its journal and applies them to the same order state machine
   and positions the primary has, through recovery's ``Replay`` (one code path with the OMS's
   start-up), when no byte waits or when the state is asked for.

Between records it polls for ``replication.standby_spin_us`` after the last bytes came, then
sleeps (select() on TCP, the records ring's doorbell on shm).

It keeps what a takeover logs in with: the next SoupBinTCP sequence number, the session name, the
next OUCH token counter and the last token prefix (``StandbyState``). An ACK means written to
the standby's journal mapping (page cache, or synced per its ``durability``); the records are
applied to the state right after it is sent.
Takeover (the standby becoming the primary, ``--takeover``) is ``takeover.py``.
"""
from __future__ import annotations

import logging
import os
import select
import socket
import time
from dataclasses import dataclass

from appliance.oms import replication_wire as rw
from appliance.oms.journal import Journal, archive_name
from appliance.oms.journal_format import FILE_HEADER_SIZE, JournalError, read_file_header, read_from, whole_from
from appliance.oms.recovery import Replay
from appliance.oms.replication_shm import StandbyLink

log = logging.getLogger("appliance.oms.standby")

RECEIVE_BUFFER = 1 << 18
MAX_UNAPPLIED = 4096         # records acknowledged and not applied yet: a catch-up applies them this many at a time


@dataclass(frozen=True)
class StandbyState:
    """What a takeover would log in with, and how far the standby is."""
    records: int
    next_sequence_number: int          # SoupBinTCP: the next venue message asked for at login
    session_name: str
    next_token_counter: int
    last_token_prefix: int | None
    open_orders: int
    primary_last_sequence: int         # from the primary's last heartbeat
    connected: bool


class StandbyReplica:
    """One standby: its journal, its replayed state and its connection to the primary (poll-driven)."""

    def __init__(self, config, symbols: list[str], layout=None):
        self.config = config                 # OmsConfig
        self.replication = config.replication
        # the carrier: TCP to the primary's address, or on this box the layout's rings (replication_shm.py)
        self._link = StandbyLink(layout, self.replication.standby_journal_path + ".lock") \
            if self.replication.transport == "shm" else None
        self.symbols = list(symbols)
        self.path = self.replication.standby_journal_path
        self.heartbeat_ns = self.replication.heartbeat_ms * 1_000_000
        self.peer_timeout_ns = self.replication.peer_timeout_ms * 1_000_000
        self.spin_ns = self.replication.standby_spin_us * 1_000     # polled this long after the last bytes
        self.journal: Journal | None = None
        self.header: bytes | None = None
        self.replay = Replay(self.symbols)
        self.sock: socket.socket | None = None
        self._reader: rw.FrameReader | None = None
        self._hello = False
        self._last_received_ns = 0
        self._last_sent_ns = 0
        self.next_attempt_ns = 0
        self.primary_last_sequence = 0
        self.connections = 0
        self.answered_connections = 0        # connections the primary answered (HELLO): over shm a connect
        self.bad_frames = 0                  # alone succeeds with no primary at all
        self.disconnects = 0
        self.records_received = 0
        self.archived: list[str] = []
        self.last_error = ""
        if os.path.exists(self.path):
            self._open_existing()

    # ------------------------------------------------------------------ the state

    @property
    def replay(self) -> Replay:
        """The order state the records make: records acknowledged but not applied yet (``_read``
        leaves them while more bytes wait, so that an order's acknowledgement never waits behind
        the state) are applied first, whoever asks."""
        if self._unapplied:
            self._apply_pending()
        return self._replay

    @replay.setter
    def replay(self, replay: Replay) -> None:
        self._replay = replay
        self._unapplied = []                 # (offset in the journal, first sequence, count) of records
        self._unapplied_records = 0

    def _apply_pending(self, yield_to_bytes: bool = False) -> None:
        """The records written and acknowledged since the last call, read back from the journal's mapping
        (checked once when they came) and applied to the state. ``yield_to_bytes``: stop after the record
        during which bytes from the primary came (they are read and acknowledged first: an order's
        acknowledgement never waits behind the state of the records before it); the rest waits."""
        mm, used = self.journal.mapping, self.journal.used_bytes
        unapplied, nothing_waiting = self._unapplied, self._nothing_waiting
        while unapplied:
            offset, first, count = unapplied[0]
            records, _end, why = read_from(mm, used, offset, first, count)
            if why or len(records) != count:        # cannot happen: the same bytes passed whole_from
                raise JournalError(f"{self.path}: records {first}.. at offset {offset} read back short: {why}")
            taken = count
            if yield_to_bytes:
                taken = 0

                def until_bytes_wait():
                    nonlocal taken
                    for record in records:
                        taken += 1
                        yield record                 # Replay.apply asks for the next one once this is applied
                        if not nothing_waiting():
                            return
                self._replay.apply(until_bytes_wait())
            else:
                self._replay.apply(records)
            self._unapplied_records -= taken
            if taken < count:
                unapplied[0] = (records[taken].offset, first + taken, count - taken)
                return
            unapplied.pop(0)

    def _nothing_waiting(self) -> bool:
        """No byte from the primary is waiting right now (the time to apply what was acknowledged)."""
        if self._link is not None:
            return not self.sock.readable()
        try:
            return not select.select([self.sock], [], [], 0)[0]
        except (OSError, ValueError):
            return True

    # ------------------------------------------------------------------ the journal

    def _open_existing(self) -> None:
        with open(self.path, "rb") as f:
            head = f.read(FILE_HEADER_SIZE)
        try:
            size = read_file_header(head)["file_size"] if len(head) == FILE_HEADER_SIZE else 0
            self.journal = Journal.open(self.path, size, self.config.durability, self.config.group_commit_us)
        except (JournalError, ValueError) as exc:
            log.warning("standby journal %s unusable (%s): archived; a new one starts from the primary's", self.path, exc)
            self._archive()
            return
        self.header = head
        self.replay.apply(self.journal.records())
        log.info("standby journal %s: %d records replayed", self.path, self.journal.next_sequence - 1)

    def _archive(self) -> None:
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        if os.path.exists(self.path):
            day = read_file_header(self.header)["trading_day"] if self.header else 0
            target = archive_name(self.path, day)
            os.replace(self.path, target)
            self.archived.append(target)
        self.header = None
        self.replay = Replay(self.symbols)

    def _start_journal(self, header: bytes) -> None:
        """A new journal that starts as the primary's: its file header, byte for byte."""
        fields = read_file_header(header)
        if not fields["crc_ok"]:
            raise rw.ReplicationProtocolError("the primary's file header fails its CRC")
        self._archive()
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, header)
            os.fsync(fd)
        finally:
            os.close(fd)
        self.journal = Journal.open(self.path, fields["file_size"], self.config.durability, self.config.group_commit_us)
        self.header = header
        log.info("standby journal %s started from the primary's header (%d bytes)", self.path, fields["file_size"])

    @property
    def next_sequence(self) -> int:
        return self.journal.next_sequence if self.journal is not None else 1

    def state(self) -> StandbyState:
        s = self.replay.state
        return StandbyState(self.next_sequence - 1, s.next_sequence_number, s.session_name, s.next_counter,
                            s.last_prefix, s.orders.open_orders, self.primary_last_sequence, self._hello)

    @property
    def answered(self) -> bool:
        """The current connection is one a primary answered (HELLO): there is a stream to drain."""
        return self.sock is not None and self._hello

    @property
    def shm_epoch(self) -> int:
        """Over shm, the epoch of this standby's last connection (0: none, or TCP): a takeover retires
        the slots up to it (``replication_shm.retire_standby_slots``)."""
        return self._link.last_epoch if self._link is not None else 0

    @property
    def orders(self):
        return self.replay.state.orders

    @property
    def last_received_ns(self) -> int:
        """Monotonic: when the primary was last heard from (a byte, or the connection made)."""
        return self._last_received_ns

    # ------------------------------------------------------------------ the connection

    def poll(self, timeout_s: float = 0.05) -> int:
        """One round: connect when due, read what came (waiting up to ``timeout_s``), heartbeat, time out."""
        now = time.monotonic_ns()
        if self.sock is None:
            if now < self.next_attempt_ns:
                time.sleep(min(timeout_s, (self.next_attempt_ns - now) / 1e9))
                return 0
            if not self._connect(now):
                return 0
        work = 0
        if self._unapplied and (self._unapplied_records > MAX_UNAPPLIED or self._nothing_waiting()):
            self._apply_pending(yield_to_bytes=self._unapplied_records <= MAX_UNAPPLIED)
        spin_until = self._last_received_ns + self.spin_ns if self.spin_ns else 0
        if self._link is not None:
            readable = self.sock.wait_readable(timeout_s, spin_until)
        else:
            readable = self._wait_socket(timeout_s, spin_until)
        now = time.monotonic_ns()
        if readable:
            work = self._read(now)
        if self.sock is not None:
            if now - self._last_received_ns > self.peer_timeout_ns:
                self._drop(now, f"primary silent for {(now - self._last_received_ns) / 1e9:.3f} s")
            elif now - self._last_sent_ns >= self.heartbeat_ns and self._hello:
                self._send(rw.ack(self.next_sequence - 1), now)
        return work

    def _wait_socket(self, timeout_s: float, spin_until_ns: int) -> bool:
        """The socket readable within ``timeout_s``: polled without sleeping until ``spin_until_ns``
        (monotonic: bytes that come then find the standby awake), asleep in select() after."""
        sock = self.sock
        try:
            if spin_until_ns:
                clock, deadline = time.monotonic_ns, time.monotonic_ns() + int(timeout_s * 1e9)
                spin_until = min(spin_until_ns, deadline)
                while clock() < spin_until:
                    if select.select([sock], [], [], 0)[0]:
                        return True
                timeout_s = max(0.0, (deadline - clock()) / 1e9)
            return bool(select.select([sock], [], [], timeout_s)[0])
        except (OSError, ValueError):
            return True

    def _connect(self, now: int) -> bool:
        address = (self.replication.primary_host, self.replication.primary_port) if self._link is None else \
            ("shm", self._link.layout.rings["replication_records"].segment)
        try:
            if self._link is not None:
                sock = self._link.connect()
            else:
                sock = socket.create_connection(address, timeout=max(0.1, self.peer_timeout_ns / 1e9))
        except OSError as exc:
            self.last_error = f"connect to {address[0]}:{address[1]}: {exc.strerror or exc}"
            self.next_attempt_ns = now + min(self.peer_timeout_ns, 200_000_000)
            return False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        self.sock = sock
        self._reader = rw.FrameReader((rw.HELLO, rw.RECORDS, rw.BEAT))
        self._hello = False
        self.connections += 1
        self._last_received_ns = now
        log.info("connected to the primary at %s:%s; asking from sequence %d", *address, self.next_sequence)
        self._send(rw.subscribe(self.next_sequence, self.header), now)
        return self.sock is not None

    def _drop(self, now: int, why: str) -> None:
        log.warning("replication from the primary: %s; reconnecting", why)
        self.last_error = why
        self.disconnects += 1
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = None
        self._hello = False
        self.next_attempt_ns = now + 50_000_000

    def _send(self, data: bytes, now: int) -> None:
        sock = self.sock
        try:
            try:
                sent = sock.send(data)       # a few bytes: the kernel takes them at once
            except (BlockingIOError, InterruptedError):
                sent = 0
            if sent < len(data):             # it did not: wait for it (a standby has no duty cycle to keep)
                sock.settimeout(self.peer_timeout_ns / 1e9)
                sock.sendall(data[sent:])
                sock.setblocking(False)
        except OSError as exc:
            self._drop(now, f"send: {exc.strerror or exc}")
            return
        self._last_sent_ns = now

    def _read(self, now: int) -> int:
        try:
            data = self.sock.recv(RECEIVE_BUFFER)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            self._drop(now, f"receive: {exc.strerror or exc}")
            return 0
        if not data:
            self._drop(now, "the primary closed the connection")
            return 0
        self._last_received_ns = now
        written = 0
        problem = None
        try:
            for kind, body in self._reader.feed(data):
                if kind == rw.RECORDS:
                    written += self._write(body)
                elif kind == rw.HELLO:
                    self._on_hello(*rw.parse_hello(body))
                else:
                    self.primary_last_sequence = rw.parse_beat(body)[0]
        except rw.ReplicationProtocolError as exc:
            self.bad_frames += 1
            problem = exc
        if written:
            # acknowledged once in the journal (what sync waits for), applied to the state after: when no
            # byte waits (poll), or when the state is read
            self._send(rw.ack(self.next_sequence - 1), now)
            self.records_received += written
        if problem is not None and self.sock is not None:
            self._drop(now, f"protocol error: {problem}")
        return written

    def _on_hello(self, header: bytes, first: int) -> None:
        if header != self.header:
            if first != 1:
                raise rw.ReplicationProtocolError(f"a new journal must start at sequence 1, not {first}")
            self._start_journal(header)
        elif first != self.next_sequence:
            raise rw.ReplicationProtocolError(f"the primary sends from sequence {first}, this standby needs "
                                              f"{self.next_sequence}")
        self._hello = True
        self.answered_connections += 1

    def _write(self, body: bytes) -> int:
        """Check one RECORDS frame (each record's header, sequence and CRC: ``whole_from``) and copy its
        bytes to the journal as they are; how many records (to apply after the acknowledgement)."""
        if not self._hello:
            raise rw.ReplicationProtocolError("records before HELLO")
        journal = self.journal
        first, size = journal.next_sequence, len(body)
        end, due = whole_from(body, size, 0, first, 1 << 30)
        if end != size or due == first:
            _records, end, why = read_from(body, size, 0, first, 1 << 30)      # why not: the reader's reason
            raise rw.ReplicationProtocolError(f"bad records at byte {end} of {size} "
                                              f"(sequence {first} due): {why or 'trailing bytes'}")
        offset = journal.used_bytes
        journal.append_copies(body, due - first)
        self._unapplied.append((offset, first, due - first))
        self._unapplied_records += due - first
        return due - first

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None
        if self.journal is not None:
            self.journal.close()
            self.journal = None
        if self._link is not None:
            self._link.close()
