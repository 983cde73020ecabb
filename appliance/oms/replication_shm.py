"""Journal replication to a standby on the same box: the TCP protocol carried by two rings of the layout.

The bytes are ``replication_wire``'s frames exactly as on TCP (the journal's own records inside
RECORDS frames, CRC and all): one protocol, two carriers. ``replication_records`` (oms ->
oms_standby) carries HELLO, RECORDS and BEAT; ``replication_acks`` (oms_standby -> oms) SUBSCRIBE
and ACK. Each slot is a ``ReplicationChunk`` record (messages/catalog.py: the connection's epoch,
the sender's pid, how many stream bytes follow) and then those bytes; ``ShmConnection`` gives each
side a non-blocking socket's ``send``/``recv``/``close``, so ``ReplicationPrimary`` and
``StandbyReplica`` run the same code over either carrier.

Connections. The standby picks an epoch larger than any before it (its wall clock in ns) and sends
its SUBSCRIBE in slots of that epoch; the primary's ``ShmListener`` takes a slot of an epoch newer
than any it has seen as a new connection (what ``accept`` is on TCP). Both sides skip slots of any
other epoch, so what a dead standby or an older connection left in a ring is never read as this
connection's bytes. A closing side sends a CLOSE_CHUNK slot (the peer's ``recv`` then returns
``b""``, as after a FIN); a side that died sends nothing, so each side also watches the other's pid
(from its slots): a pid gone closes the connection at once, else the protocol's heartbeats time it
out. One standby at a time: the rings are single-producer/single-consumer, and a second standby
would make two producers of ``replication_acks`` (``StandbyLink`` takes a lock on its journal,
and an exclusive flock on the rings' segment file when it attaches: a takeover swaps the journals,
so only the latter is one lock for whoever is the standby; a second standby is refused, exit 2).

Takeover (``takeover.py``). The rings keep their roles by name: whoever is the layout's ``oms``
produces ``replication_records`` and consumes ``replication_acks``, whoever is the standby is the
peer ``oms_standby``. Both ends resume from the rings' read and write positions in shared memory
(as any restarted side of a ring does), so nothing is reformatted; what the old roles left in the
rings is told apart by epoch, by this rule:

- ``replication_records``: the dead primary's unread slots carry the epochs of the old standby's
  connections; a new standby's epoch (chosen after them) is newer, so it skips them as an older
  connection's. Nothing to do at the takeover.
- ``replication_acks``: the old standby, now the primary, produced there itself: its ACKs, its
  CLOSE, a SUBSCRIBE of a reconnection that no primary answered. The dead primary never read them
  and the new primary is their consumer now; taken for a new standby they would be a connection
  whose first frame is not a SUBSCRIBE (counted bad, refused), or worse, a SUBSCRIBE answered
  with a HELLO that made the primary's own past look like a caught-up standby. So before the new
  primary listens, the takeover releases every slot of an epoch up to its own last one as a
  standby (``retire_standby_slots``); a newer slot is a new standby already waiting and stays.
- A new standby then attaches as ``oms_standby`` and subscribes from sequence 1 (``--fresh``:
  the dead primary's journal archived), so it copies the new primary's journal from its first
  record. The doorbell word stays where it is (the records ring's); its producer rings it.
"""
from __future__ import annotations

import errno
import fcntl
import os
import time

from appliance.messages.catalog import REPLICATION_CHUNK
from appliance.runtime import _shm
from appliance.runtime.channels import CONSUMER, PRODUCER, RingUse, check_ring_uses
from appliance.runtime.idle import BackoffIdle, lower_timer_slack
from appliance.runtime.layout import LayoutError

from appliance.oms.takeover import process_gone

RECORDS_RING = "replication_records"
ACKS_RING = "replication_acks"
PRIMARY, STANDBY = "oms", "oms_standby"
CLOSE_CHUNK = 0xFFFFFFFF
_HEADER = REPLICATION_CHUNK.struct
_HEADER_SIZE = REPLICATION_CHUNK.size
_LENGTH_AT = REPLICATION_CHUNK.offset_of["length"]
_PEEK = REPLICATION_CHUNK.fields_struct(("epoch", "pid", "length"))
_TYPE, _VERSION = REPLICATION_CHUNK.type_id, REPLICATION_CHUNK.version
PID_CHECK_NS = 5_000_000           # how often an idle side looks whether its peer's process still exists
# The standby's wait for records: a record must be acknowledged within microseconds for sync to be
# cheap, yet a quiet standby must not take a CPU from the order path: a short spin, then asleep on a
# futex doorbell that the primary's commit rings (no sleep quantum, no yield loop under load).
WAIT_SPINS, WAIT_YIELDS, WAIT_MIN_PARK_NS, WAIT_MAX_PARK_NS = 200, 10, 20_000, 500_000
# The doorbell's word: in the records ring's descriptor line (written once, when the ring is formatted,
# and only read after), its second 64 bytes; the standby is not a process of the layout, so it has no
# doorbell in the process table. The primary's ring rings it; the standby announces and waits on it.
DOORBELL_AT = 64
# A dead primary rings nothing: the asleep standby wakes this often to look at its pid (the takeover's
# detection on this box: about half of it on average; an idle standby's cost: this many wake-ups a second).
WAIT_PEER_LOOK_NS = 10_000_000


def ring_uses(side: str) -> tuple[RingUse, RingUse]:
    """The two rings as ``side`` (PRIMARY or STANDBY) uses them: (outgoing, incoming)."""
    if side == PRIMARY:
        return (RingUse(RECORDS_RING, PRODUCER, REPLICATION_CHUNK, peer=STANDBY),
                RingUse(ACKS_RING, CONSUMER, REPLICATION_CHUNK, peer=STANDBY))
    return (RingUse(ACKS_RING, PRODUCER, REPLICATION_CHUNK, peer=PRIMARY),
            RingUse(RECORDS_RING, CONSUMER, REPLICATION_CHUNK, peer=PRIMARY))


def check_layout(layout, side: str) -> None:
    """The layout declares both rings with this side where it must be (LayoutError otherwise)."""
    check_ring_uses(layout, PRIMARY if side == PRIMARY else STANDBY, ring_uses(side),
                    "shm journal replication (params.replication.transport: shm)")


def _pid_alive(pid: int) -> bool:
    """The peer can still answer: an unknown pid (0: not told yet) counts as alive, the heartbeats decide;
    otherwise the takeover's one rule of a process gone (no such process, or a zombie)."""
    return pid <= 0 or not process_gone(pid)


class ShmConnection:
    """One connection over the two rings, shaped like a non-blocking socket: ``send`` takes what
    fits (BlockingIOError: nothing did), ``recv`` returns what came (BlockingIOError: nothing yet;
    ``b""``: the peer closed, died, or a newer connection has started)."""

    def __init__(self, out_ring, out_buffer, in_ring, in_buffer, epoch: int, peer_pid: int = 0):
        self._out, self._out_buf = out_ring, out_buffer
        self._in, self._in_buf = in_ring, in_buffer
        self._room = out_ring.slot_size - _HEADER_SIZE
        self.epoch = epoch
        self.pid = os.getpid()
        self.peer_pid = peer_pid
        self.closed = False
        self.peer_closed = False
        self.newer = False                      # a slot of a newer epoch waits: this connection is over
        self._next_pid_check = 0
        self._on_close = None
        self._timeout_s = None
        self.doorbell = None                    # the standby's: asleep on it in wait_readable

    def fileno(self):
        return None                             # nothing to poll(): the OMS polls the ring in its duty cycle

    def setblocking(self, _flag) -> None:
        pass

    def setsockopt(self, *_args) -> None:
        pass

    def send(self, data) -> int:
        if self.closed or self.peer_closed:
            raise BrokenPipeError(errno.EPIPE, "the replication connection is closed")
        ring, buf, room = self._out, self._out_buf, self._room
        total = len(data)
        if 0 < total <= room:                  # one slot (a record, an ack): built here, pushed in one call
            if not ring.try_push(_HEADER.pack(_TYPE, _VERSION, _HEADER_SIZE, self.epoch, self.pid, total) + data):
                raise BlockingIOError(errno.EAGAIN, "the replication ring is full")
            return total
        sent = 0
        view = memoryview(data)
        while sent < total:
            offset = ring.claim()
            if offset < 0:
                break
            n = min(room, total - sent)
            _HEADER.pack_into(buf, offset, _TYPE, _VERSION, _HEADER_SIZE, self.epoch, self.pid, n)
            start = offset + _HEADER_SIZE
            buf[start:start + n] = view[sent:sent + n]
            ring.commit()
            sent += n
        if sent == 0 and total:
            raise BlockingIOError(errno.EAGAIN, "the replication ring is full")
        return sent

    def settimeout(self, timeout_s) -> None:
        self._timeout_s = timeout_s

    def sendall(self, data) -> None:
        """All of ``data`` (a standby has no duty cycle to keep); TimeoutError when the ring stays full
        for the ``settimeout`` time."""
        deadline = time.monotonic() + (self._timeout_s or 1.0)
        view = memoryview(data)
        while view:
            try:
                view = view[self.send(view):]
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(errno.ETIMEDOUT, "the replication ring stayed full") from None
                time.sleep(0.0002)

    def recv(self, size: int) -> bytes:
        if self.closed:
            raise OSError(errno.EBADF, "the replication connection is closed")
        if self.peer_closed or self.newer:
            return b""
        ring, buf = self._in, self._in_buf
        first = None                            # the common case, one slot: its bytes as they are
        out = None
        taken = 0
        while taken < size:
            offset = ring.peek()
            if offset < 0:
                break
            epoch, pid, length = _PEEK.unpack_from(buf, offset)
            if epoch != self.epoch:
                if epoch > self.epoch:
                    self.newer = True           # left in the ring (peeked, not released): the listener's
                    break                       # next connection reads it
                ring.release()                  # an older connection's: skipped
                continue
            if length == CLOSE_CHUNK:
                ring.release()
                self.peer_closed = True
                break
            if length > ring.slot_size - _HEADER_SIZE:
                ring.release()
                raise ConnectionResetError(errno.EPROTO, f"a replication slot says {length} bytes, more than "
                                                         f"its {ring.slot_size - _HEADER_SIZE}")
            self.peer_pid = pid
            start = offset + _HEADER_SIZE
            piece = bytes(buf[start:start + length])       # a copy (an mmap slice is one already): the slot is released
            ring.release()
            if first is None:
                first = piece
            elif out is None:
                out = bytearray(first)
                out += piece
            else:
                out += piece
            taken += length
        if out is not None:
            return bytes(out)
        if first:
            return first
        if self.peer_closed or self.newer:
            return b""
        now = time.monotonic_ns()
        if now >= self._next_pid_check:
            self._next_pid_check = now + PID_CHECK_NS
            if self._peer_gone_and_read():
                return b""
        raise BlockingIOError(errno.EAGAIN, "nothing in the replication ring")

    def _peer_gone_and_read(self) -> bool:
        """The peer's process is gone and every slot it committed has been read (its pid looked at
        first: a slot committed just before its death is still read): the connection is over."""
        if _pid_alive(self.peer_pid) or self._in.available() > 0:
            return False
        self.peer_closed = True
        return True

    def readable(self) -> bool:
        """Something waits in the incoming ring (bytes, a close, a newer connection)."""
        return self._in.available() > 0 or self.peer_closed or self.newer

    def wait_readable(self, timeout_s: float, spin_until_ns: int = 0) -> bool:
        """The standby's wait (it has no socket to select() on): polling until ``spin_until_ns``
        (monotonic; a record that comes then needs no wake-up, so the primary's commit makes no system
        call) and a few checks more, then asleep on the records ring's doorbell (a futex the primary's
        commit rings), until something is readable or ``timeout_s``; a peer whose process is gone is
        readable too (its end, as a FIN is on TCP), looked at every ``WAIT_PEER_LOOK_NS`` at most.
        Without a doorbell (a test's connection): spin, yield, park."""
        available = self._in.available
        if available() > 0 or self.peer_closed or self.newer:
            return True
        clock = time.monotonic_ns
        deadline = clock() + int(timeout_s * 1e9)
        spin_until = min(spin_until_ns, deadline)
        while clock() < spin_until:
            if available() > 0:
                return True
        for _ in range(WAIT_SPINS):
            if available() > 0:
                return True
        doorbell = self.doorbell
        idle = None if doorbell is not None else BackoffIdle(0, WAIT_YIELDS, WAIT_MIN_PARK_NS, WAIT_MAX_PARK_NS)
        while True:
            now = time.monotonic_ns()
            left = deadline - now
            if left <= 0:                   # a dead peer rings nothing: its pid says so (recv then gives b"")
                return self._peer_gone_and_read() or available() > 0
            if now >= self._next_pid_check:
                self._next_pid_check = now + PID_CHECK_NS
                if self._peer_gone_and_read():
                    return True
            if doorbell is None:
                idle.idle(0)
            else:
                doorbell.announce()
                if available() > 0:
                    doorbell.cancel()
                    return True
                doorbell.wait(min(left, WAIT_PEER_LOOK_NS))
                doorbell.cancel()
            if available() > 0:
                return True

    def close(self) -> None:
        if self.closed:
            return
        if not self.peer_closed and not self.newer:
            offset = self._out.claim()          # best effort: a full ring leaves the peer to its timeout
            if offset >= 0:
                _HEADER.pack_into(self._out_buf, offset, _TYPE, _VERSION, _HEADER_SIZE, self.epoch, self.pid,
                                  CLOSE_CHUNK)
                self._out.commit()
        self.closed = True
        if self._on_close is not None:
            self._on_close(self)


def _ring(layout, buffer, name: str, role: str):
    """One side of a replication ring; the records ring's producer rings the standby's doorbell."""
    r = layout.rings[name]
    doorbell = r.offset + DOORBELL_AT if name == RECORDS_RING and role == "producer" else -1
    return _shm.Ring(buffer, r.offset, r.slot_size, r.capacity, "p" if role == "producer" else "c", doorbell)


def _rings(make_ring, buffer, side: str):
    """(outgoing ring, its buffer, incoming ring, its buffer) of ``side``; ``make_ring(name, role)``."""
    out_use, in_use = ring_uses(side)
    return make_ring(out_use.name, "producer"), buffer, make_ring(in_use.name, "consumer"), buffer


class ShmListener:
    """The primary's side: what ``socket.accept`` is on TCP. A slot of an epoch newer than any seen
    is a new connection (its first bytes, the SUBSCRIBE, are left for the connection to read);
    slots of dead connections are skipped."""

    def __init__(self, memory):
        check_layout(memory.layout, PRIMARY)
        if memory.layout.rings[RECORDS_RING].segment != memory.layout.rings[ACKS_RING].segment:
            raise LayoutError(memory.layout.path, f"rings.{ACKS_RING}.segment",
                              f"must be the segment of {RECORDS_RING}")
        buffer = memory.ring_buffer(RECORDS_RING)
        self._out, self._out_buf, self._in, self._in_buf = _rings(lambda name, role: _ring(memory.layout, buffer,
                                                                                          name, role),
                                                                  buffer, PRIMARY)
        self.address = ("shm", memory.layout.rings[RECORDS_RING].segment)
        self._seen_epoch = 0
        self._live: ShmConnection | None = None

    def getsockname(self):
        return self.address

    def setblocking(self, _flag) -> None:
        pass

    def accept(self):
        ring, buf = self._in, self._in_buf
        live = self._live
        while True:
            offset = ring.peek()
            if offset < 0:
                raise BlockingIOError(errno.EAGAIN, "no standby waiting")
            epoch, pid, _length = _PEEK.unpack_from(buf, offset)
            if epoch > self._seen_epoch:
                self._seen_epoch = epoch
                connection = ShmConnection(self._out, self._out_buf, ring, buf, epoch, pid)
                connection._on_close = self._closed
                if live is not None:
                    live.newer = True
                self._live = connection
                return connection, ("shm", pid)
            if live is not None and not live.closed and epoch == live.epoch:
                raise BlockingIOError(errno.EAGAIN, "no standby waiting")     # the live connection's bytes
            ring.release()                       # a dead connection's

    def _closed(self, connection: ShmConnection) -> None:
        if self._live is connection:
            self._live = None

    def close(self) -> None:
        if self._live is not None:
            self._live.close()


class StandbyConflict(RuntimeError):
    """Another standby is attached to the replication rings (one producer of ``replication_acks``)."""


def retire_standby_slots(memory, last_epoch: int) -> int:
    """The takeover's step before the new primary listens (the rule above): the slots a standby that
    became the primary left in ``replication_acks``, epochs up to ``last_epoch``, released unread;
    stops at a newer one (a new standby's). How many were released."""
    check_layout(memory.layout, PRIMARY)
    buffer = memory.ring_buffer(ACKS_RING)
    ring = _ring(memory.layout, buffer, ACKS_RING, "consumer")
    released = 0
    while (offset := ring.peek()) >= 0 and _PEEK.unpack_from(buffer, offset)[0] <= last_epoch:
        ring.release()
        released += 1
    return released


class StandbyLink:
    """The standby's side: attaches the rings' segment of the layout and opens connections."""

    def __init__(self, layout, lock_path: str):
        from appliance.runtime.segment import Segment
        check_layout(layout, STANDBY)
        if layout.rings[RECORDS_RING].segment != layout.rings[ACKS_RING].segment:
            raise LayoutError(layout.path, f"rings.{ACKS_RING}.segment", f"must be the segment of {RECORDS_RING}")
        self.layout = layout
        lower_timer_slack()                   # the wait's short parks are not rounded up to ~50 us
        os.makedirs(os.path.dirname(lock_path) or ".", exist_ok=True)
        self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise RuntimeError(f"another standby holds {lock_path}: one standby per primary "
                               "(the replication rings have one producer each)") from None
        self._segment_cls = Segment
        self._segment = None
        self._ring_lock_fd = -1
        self._rings = None
        self._doorbell = None
        self.last_epoch = 0                 # of its last connection: a takeover retires its slots

    def _attach(self) -> None:
        layout = self.layout
        spec = layout.segments[layout.rings[RECORDS_RING].segment]
        segment = self._segment_cls.attach(layout, spec)
        try:
            fd = os.open(segment.path, os.O_RDONLY)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise StandbyConflict(f"another standby is attached to {segment.path}: one standby at a time "
                                      "(the replication rings have one producer each)") from None
        except BaseException:
            segment.close()
            raise
        self._ring_lock_fd = fd
        self._segment = segment
        self._rings = _rings(lambda name, role: _ring(layout, segment.buffer, name, role), segment.buffer, STANDBY)
        self._doorbell = _shm.Doorbell(segment.buffer, layout.rings[RECORDS_RING].offset + DOORBELL_AT)

    def connect(self) -> ShmConnection:
        """A new connection (OSError: the segment is not there yet: the supervisor has not made it;
        StandbyConflict: another standby is attached)."""
        if self._rings is None:
            try:
                self._attach()
            except StandbyConflict:
                raise
            except Exception as exc:            # noqa: BLE001 - a missing or foreign segment: try again later
                raise ConnectionRefusedError(errno.ECONNREFUSED, f"replication segment: {exc}") from None
        out_ring, out_buf, in_ring, in_buf = self._rings
        epoch = max(time.time_ns(), self.last_epoch + 1)
        self.last_epoch = epoch
        connection = ShmConnection(out_ring, out_buf, in_ring, in_buf, epoch)
        connection.doorbell = self._doorbell
        return connection

    def close(self) -> None:
        self._rings = self._doorbell = None
        if self._segment is not None:
            self._segment.close()
            self._segment = None
        if self._ring_lock_fd >= 0:
            os.close(self._ring_lock_fd)
            self._ring_lock_fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def layout_entries(segment: str = "replication", records_slot_size: int = 4096, records_capacity: int = 64,
                   acks_slot_size: int = 128, acks_capacity: int = 1024) -> dict:
    """What a layout document adds for ``transport: shm`` (the commented example in shm_layout.yaml):
    its own segment (a standby attaches it alone), the standby as a peer, the two rings. The records
    ring is 64 pages: every record goes to a fresh slot, and with a page per slot a ring of 1024 made
    each send (and each read) touch a page not touched for 1023 records, ~3 us more a side on this
    box (``bench failover``); a 64 KiB catch-up frame still takes 16 slots of 64."""
    return {"segments": [{"name": segment, "backing": "4k", "mode": "0600"}], "peers": [STANDBY],
            "rings": [{"name": RECORDS_RING, "segment": segment, "producer": PRIMARY, "consumer": STANDBY,
                       "message": REPLICATION_CHUNK.name, "slot_size": records_slot_size,
                       "capacity": records_capacity},
                      {"name": ACKS_RING, "segment": segment, "producer": STANDBY, "consumer": PRIMARY,
                       "message": REPLICATION_CHUNK.name, "slot_size": acks_slot_size, "capacity": acks_capacity}]}


def add_to_layout(document: dict, **sizes) -> dict:
    """``document`` (a layout as a dict) with ``layout_entries`` added: for tests and benchmarks."""
    entries = layout_entries(**sizes)
    document["segments"] = list(document["segments"]) + entries["segments"]
    document["peers"] = list(document.get("peers", [])) + entries["peers"]
    document["rings"] = list(document["rings"]) + entries["rings"]
    return document
