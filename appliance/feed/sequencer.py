"""MoldUDP64 sequencing with gap recovery: in order, once, or counted as lost.

``MoldSequencer`` looks at every received packet (live feed and re-request
answers alike) and says what to do with it: deliver it now (and how many of its
leading messages were already seen), drop it, or hold it because messages before
it are missing. Missing ranges are asked for with MoldUDP64 request packets
through the ``send_request`` callable; unanswered requests are re-sent after a
timeout and, after ``max_retries`` re-sends, the range is given up (counted and
latched in ``lost``: the books can no longer be trusted until rebuilt by ``restart``).

No sockets and no clock inside: the caller passes the receive time and the time
now, so the whole thing is unit-testable. The caller's duty cycle::

    skip = sequencer.accept(buffer, nbytes, rx_ns, now_ns)
    if skip >= 0:                                             # the new messages start at payload_offset
        handle(block_scanner.scan(buffer, sequencer.payload_offset, nbytes, True), rx_ns)
        for packet, size, skip, rx in sequencer.drain():     # () unless a gap was open
            handle(block_scanner.scan(packet, block_offset(packet, size, skip), size, True), rx)
    elif skip == RESTARTED:                                   # a new session: see below
        clear_books_and_mark_them_stale()
    ...
    if sequencer.poll(now_ns):                                # gave up on a range
        mark_books_stale()
        for packet, size, skip, rx in sequencer.drain():
            handle(block_scanner.scan(packet, block_offset(packet, size, skip), size, True), rx)

``accept``'s walk over the blocks (they must fill the packet exactly) is the only one before the
decode: it notes where the messages not delivered before start (``payload_offset``).

Compiled: with the compiled books, the feed agent first offers each live packet to ``FastFeed.bind_sequencer``'s
C call, which does ``accept`` and the decode in one walk when the packet is the next expected one with no gap
open, writing this object's own slots exactly as ``accept`` would; it declines anything else (changing nothing)
and this class runs. This class is the reference: tests/feed/test_feed_in_order_diff.py.

Recovery is one request stream from ``next_expected``: a request asks for
``[next_expected, highest sequence seen)`` (at most ``max_request_count``
messages). The exchange answers one packet per request (as many messages as fit
its payload limit), so each answer that moves ``next_expected`` while a gap is
still open triggers the next request at once: from ``accept`` when nothing is
held, else from ``drain`` once the held packets that follow are delivered (``poll``
is the backstop when the caller skips ``drain``). A request that brings nothing is
re-sent after ``request_timeout_ns``. ``drain()`` may be gated on ``pending``
(truthy while packets are held) or called after every delivery: both are cheap.

Liveness: ``last_live_ns`` is the time of the last packet that proves the followed session
is alive now: a data packet delivered or held (at or beyond ``next_expected``), or a heartbeat
announcing a next sequence at or beyond every sequence seen. Duplicates, packets of another
session, bad packets and end-of-session packets do not refresh it.

Rebuilding: the messages before the first packet seen (a late join), or every message after
a ``restart``, are history the books need. ``rebuilding`` is true until ``next_expected``
reaches ``rebuild_until``; ``live`` is true when the books built from what was delivered may
be published as live: nothing given up (``lost``), the session not ended, not rebuilding.
Only ``restart`` clears ``lost`` and ``ended``: it forgets everything held, follows the
session from sequence 1 and asks for ``[1, high_water)`` at once. The caller clears its
books first (the agent does so after a lost gap, with a backoff, and on a session restart).

History from a snapshot (``skip_history``): the caller gets the history from a snapshot
(GLIMPSE) instead of re-requests. Then nothing before the first packet seen (a late join)
or before the restart point is asked for: ``next_expected`` jumps to the first sequence
seen (``origin`` says where), ``rebuilding`` is never set, and ``restart`` follows the new
session from ``high_water`` without a request. The caller clears ``lost`` with
``books_rebuilt`` once its books are rebuilt from a snapshot.

A new session, or the same one restarted (the rule; one place, here):

- Evidence of a restart is a well-formed packet the followed session cannot have sent now:
  a packet of another session name (only when no session was configured: a configured
  session is pinned and other names are only counted in ``wrong_session``), a heartbeat or
  end of session of the followed session announcing a next sequence below one already seen
  (``high_water``), or a data packet of the followed session wholly below ``next_expected``
  (a duplicate), all arriving on the live feed (an answer to a re-request is never evidence: late
  and repeated answers are normal). A run of evidence ends at the next liveness packet; it is kept for one
  candidate session name (a packet of another name starts a new run).
- The candidate is adopted when its run holds at least ``ADOPT_AFTER_PACKETS`` packets and
  the followed session has been silent (no liveness) for ``silence_ns`` (the agent passes
  its ``stale_after_ms``: the books are already stale by then), or, for a candidate of
  another name, the followed session has ended. ``accept`` then returns ``RESTARTED``: the
  sequencer has already restarted on the candidate from sequence 1 up to the latest
  evidence packet's high sequence (``last_restart`` says from what to what).
- So one stray packet never switches; packets of another session, or replays, while the
  followed session is alive never switch; a live old session always wins. A wrong switch
  heals itself: a same-name one only rebuilds the books from the venue's own store; after
  a switch to a stray name, the venue's session is the candidate once the stray falls silent.
- What cannot be told: a restarted session under the same name whose sequences reach
  ``next_expected`` before the old one has been silent for ``silence_ns`` (a low-traffic
  day: few messages before the restart, or many soon after it) continues the old sequence
  and is merged: only the books' own checks (unknown order references) see it then. Data
  packets carry no session identity beyond the name, duplicates and late heartbeats occur
  in a live session, and anyone on the host can send to the port, so nothing sooner than
  the silence is sound.
"""
from __future__ import annotations

from heapq import heappop, heappush
from typing import Callable

from appliance.wire import moldudp64

DROP = -1          # nothing to deliver: duplicate, heartbeat, end of session, bad packet, wrong session, store full
BUFFERED = -2      # held until the messages before it are recovered
RESTARTED = -3     # a new (or restarted) session was adopted: clear every book; the rebuild from 1 is requested

ADOPT_AFTER_PACKETS = 2     # evidence packets a candidate session needs (one stray packet never switches)

# The exchange's re-request server answers at most this many messages per request
# (appliance.exchange.market_data.RerequestServer.MAX_ANSWER_MESSAGES; not imported:
# the appliance never imports the exchange). In practice one answer packet holds fewer
# (its payload limit, ~1400 bytes); the rest is asked for again as answers arrive.
MAX_REQUEST_COUNT = 1000

COUNTER_NAMES = (
    "packets",                  # every packet looked at
    "delivered_packets",        # packets handed out (by accept or drain)
    "messages_delivered",       # new messages handed out
    "messages_recovered",       # of those, messages whose delivered copy arrived after a gap was known for them
    "gaps",                     # new holes detected
    "duplicate_packets",        # wholly old packets (and duplicates of held packets)
    "heartbeats",
    "end_of_session_packets",
    "bad_packets",              # short header, blocks not filling the packet, bytes after a heartbeat
    "wrong_session",
    "overflow_drops",           # packets not held because the store was full (recovered by request)
    "requests_sent",            # request packets sent, re-sends included
    "retries",                  # re-sends after a timeout
    "gaps_abandoned",
    "messages_lost",            # sequence numbers skipped by giving up
    "next_expected",
    "buffered_packets",         # packets held now
    "gap_open",                 # 0/1
    "ended",                    # 0/1
    "lost",                     # 0/1, latched until a restart
    "session_restarts",         # new or restarted sessions adopted
    "rebuilds",                 # restarts from sequence 1 (session restarts and rebuilds after a lost gap)
    "rebuilding",               # 0/1: next_expected has not reached rebuild_until
)

_HEADER_SIZE = moldudp64.HEADER_SIZE
_HEARTBEAT = moldudp64.HEARTBEAT_COUNT
_END_OF_SESSION = moldudp64.END_OF_SESSION_COUNT
_unpack_header = moldudp64.HEADER.struct.unpack_from
_NOTHING = ()
_SEQUENCE_END = 1 << 64          # sequence + count must stay below: next_expected is a u64 (requests, counters)


class MoldSequencer:
    """Sequencing of one MoldUDP64 session; see the module docstring for the caller's loop."""

    __slots__ = ("session", "pinned", "send_request", "max_buffered_packets", "request_timeout_ns", "max_retries",
                 "max_request_count", "silence_ns", "next_expected", "ended", "lost", "last_request",
                 "last_live_ns", "rebuild_until", "last_restart", "payload_offset",
                 "packets", "delivered_packets", "messages_delivered", "messages_recovered", "gaps",
                 "duplicate_packets", "heartbeats", "end_of_session_packets", "bad_packets", "wrong_session",
                 "overflow_drops", "requests_sent", "retries", "gaps_abandoned", "messages_lost",
                 "session_restarts", "rebuilds", "skip_history",
                 "_high_water", "_pending", "_heap", "_progress", "_request_ns", "_attempts", "_now_ns", "_origin",
                 "_candidate", "_candidate_packets", "_candidate_high", "_candidate_live_ns", "_from_live")

    def __init__(self, *, session: bytes | str | None, send_request: Callable[[bytes], object],
                 max_buffered_packets: int = 4096, request_timeout_ns: int = 50_000_000, max_retries: int = 5,
                 max_request_count: int = MAX_REQUEST_COUNT, next_expected: int = 1,
                 silence_ns: int = 3_000_000_000, skip_history: bool = False) -> None:
        if max_buffered_packets < 0:
            raise ValueError("max_buffered_packets must be >= 0")
        if request_timeout_ns <= 0:
            raise ValueError("request_timeout_ns must be > 0")
        if max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if not 0 < max_request_count <= moldudp64.MAX_BLOCKS:
            raise ValueError(f"max_request_count must be 1..{moldudp64.MAX_BLOCKS}")
        if next_expected < 1:
            raise ValueError("next_expected must be >= 1")
        if silence_ns <= 0:
            raise ValueError("silence_ns must be > 0")
        self.session = moldudp64.session_bytes(session) if session is not None else None
        self.skip_history = skip_history
        self.pinned = session is not None         # a configured session is never switched for another name
        self.silence_ns = silence_ns
        self.send_request = send_request
        self.max_buffered_packets = max_buffered_packets
        self.request_timeout_ns = request_timeout_ns
        self.max_retries = max_retries
        self.max_request_count = max_request_count
        self.next_expected = next_expected
        self.ended = False
        self.lost = False
        self.last_request: tuple[int, int] | None = None   # (first, count) of the last request sent
        self.last_live_ns: int | None = None   # see the module docstring; None: never
        self.rebuild_until = next_expected
        # (old session, old next_expected, new session, new high water) of the last adoption
        self.last_restart: tuple[bytes | None, int, bytes, int] | None = None
        self.payload_offset = _HEADER_SIZE     # where the messages ``accept`` delivered start in its packet
        self.packets = 0
        self.delivered_packets = 0
        self.messages_delivered = 0
        self.messages_recovered = 0
        self.gaps = 0
        self.duplicate_packets = 0
        self.heartbeats = 0
        self.end_of_session_packets = 0
        self.bad_packets = 0
        self.wrong_session = 0
        self.overflow_drops = 0
        self.requests_sent = 0
        self.retries = 0
        self.gaps_abandoned = 0
        self.messages_lost = 0
        self.session_restarts = 0
        self.rebuilds = 0
        # Every sequence below _high_water is known to exist (seen, or announced by a heartbeat):
        # a gap is open while next_expected < _high_water.
        self._high_water = next_expected
        # sequence -> (packet bytes, rx_ns, message count, _high_water when it arrived)
        self._pending: dict[int, tuple[bytes, int, int, int]] = {}
        self._heap: list[int] = []        # the keys of _pending, smallest first
        self._progress = False            # next_expected moved inside an open gap since the last request
        self._request_ns = 0
        self._attempts = 0                # re-sends of the current request without progress
        self._now_ns = 0
        self._origin = next_expected      # next_expected at the start or the last restart
        # the current run of restart evidence (module docstring): candidate session name, packets in
        # the run, the latest packet's high sequence, and last_live_ns when the run began
        self._candidate: bytes | None = None
        self._candidate_packets = 0
        self._candidate_high = 1
        self._candidate_live_ns: int | None = None
        self._from_live = True

    # ------------------------------------------------------------------ state

    @property
    def gap_open(self) -> bool:
        return self._high_water > self.next_expected

    @property
    def buffered_packets(self) -> int:
        return len(self._pending)

    @property
    def origin(self) -> int:
        """The first sequence followed: 1, where a late join started, or where a restart resumed."""
        return self._origin

    @property
    def high_water(self) -> int:
        """Every sequence below this is known to exist (seen, or announced by a heartbeat)."""
        return self._high_water

    @property
    def rebuilding(self) -> bool:
        """The history before the first packet seen (or since a restart) is not all delivered yet."""
        return self.next_expected < self.rebuild_until

    @property
    def live(self) -> bool:
        """Books built from what was delivered may be published as live (silence is the caller's)."""
        return not self.lost and not self.ended and self.next_expected >= self.rebuild_until

    @property
    def pending(self) -> dict:
        """The held packets, by first sequence (read-only view for tests and tools)."""
        return self._pending

    def counter_values(self) -> tuple[int, ...]:
        """The values named by ``COUNTER_NAMES``, in that order (booleans as 0/1)."""
        return (self.packets, self.delivered_packets, self.messages_delivered, self.messages_recovered, self.gaps,
                self.duplicate_packets, self.heartbeats, self.end_of_session_packets, self.bad_packets,
                self.wrong_session, self.overflow_drops, self.requests_sent, self.retries, self.gaps_abandoned,
                self.messages_lost, self.next_expected, len(self._pending),
                int(self._high_water > self.next_expected), int(self.ended), int(self.lost),
                self.session_restarts, self.rebuilds, int(self.next_expected < self.rebuild_until))

    # ------------------------------------------------------------------ per packet

    def accept(self, buffer, nbytes: int, rx_ns: int, now_ns: int, live: bool = True) -> int:
        """Classify one received packet: ``>= 0`` deliver it now skipping that many leading
        messages (they start at byte ``payload_offset``; the last one delivered is
        ``next_expected - 1``); ``DROP``, ``BUFFERED`` or ``RESTARTED`` otherwise. Never raises on bad input.
        ``live``: it came on the live feed; an answer to a re-request (``live=False``) is never
        evidence of a restart (late and repeated answers are what re-requests produce)."""
        self.packets += 1
        self._now_ns = now_ns
        self._from_live = live
        if nbytes < _HEADER_SIZE or nbytes > len(buffer):
            self.bad_packets += 1
            return DROP
        session, sequence, count = _unpack_header(buffer, 0)
        if count == _HEARTBEAT or count == _END_OF_SESSION:
            if nbytes != _HEADER_SIZE:
                self.bad_packets += 1
                return DROP
            return self._control(session, sequence, count, now_ns)
        # The blocks must exactly fill the packet. The one walk over them: it also notes where the
        # messages not delivered yet start (``payload_offset``), so the caller's decode starts there.
        offset = _HEADER_SIZE
        last = nbytes - 2                             # the last offset a block header fits at
        seen = self.next_expected - sequence          # leading blocks delivered before, if it is delivered now
        seen = 0 if seen < 0 else count if seen > count else seen
        for _ in range(seen):
            if offset > last:
                offset = -1
                break
            offset += 2 + (buffer[offset] << 8 | buffer[offset + 1])
        self.payload_offset = offset
        if offset > 0:
            for _ in range(count - seen):
                if offset > last:
                    offset = -1
                    break
                offset += 2 + (buffer[offset] << 8 | buffer[offset + 1])
        if offset != nbytes or sequence + count >= _SEQUENCE_END:
            self.bad_packets += 1
            return DROP
        end = sequence + count
        if session != self.session:
            if self.session is not None:
                self.wrong_session += 1
                return DROP if self.pinned else self._evidence(session, end, now_ns)
            self.session = session                    # the first packet names the session to follow
        expected = self.next_expected
        if sequence > expected and self.skip_history and expected == self._origin:
            expected = self._skip_to(sequence)        # nothing delivered yet: the history is the snapshot's
        if sequence <= expected:
            if end <= expected:
                self.duplicate_packets += 1
                return self._evidence(session, end, now_ns)
            self.last_live_ns = now_ns
            self.next_expected = end
            self.delivered_packets += 1
            self.messages_delivered += end - expected
            high = self._high_water
            if high > expected:                       # inside an open gap: this fills some of it
                self.messages_recovered += (end if end < high else high) - expected
                if end >= high:
                    self._high_water = end            # the gap is closed
                elif self._pending:
                    self._progress = True             # drain() delivers what is held, then asks for the rest
                else:
                    self._request(now_ns)             # nothing held: ask for the rest at once
            else:
                self._high_water = end
            return expected - sequence
        self.last_live_ns = now_ns
        if expected == self._origin and sequence > self.rebuild_until:
            self.rebuild_until = sequence             # nothing delivered yet: what precedes it is history
        return self._hold(buffer, nbytes, sequence, count, rx_ns, now_ns)

    def _control(self, session: bytes, sequence: int, count: int, now_ns: int) -> int:
        """A heartbeat or end of session (``sequence`` is the sender's next)."""
        if session != self.session:
            if self.session is not None:
                self.wrong_session += 1
                return DROP if self.pinned else self._evidence(session, sequence, now_ns)
            self.session = session
        if count == _HEARTBEAT:
            self.heartbeats += 1
        else:
            self.end_of_session_packets += 1
        if sequence < self._high_water:               # the sender is behind what it already sent
            return self._evidence(session, sequence, now_ns)
        if count == _HEARTBEAT:
            self.last_live_ns = now_ns
        else:
            self.ended = True
        if sequence > self._high_water:               # it announces messages we never saw
            if self.next_expected == self._origin and sequence > self.rebuild_until:
                if self.skip_history:
                    self._skip_to(sequence)
                    return DROP
                self.rebuild_until = sequence
            self._extend(sequence, now_ns)
        return DROP

    def _skip_to(self, sequence: int) -> int:
        """``skip_history``: follow from ``sequence`` (nothing was delivered since the origin)."""
        self.next_expected = self._origin = self.rebuild_until = sequence
        if self._high_water < sequence:
            self._high_water = sequence
        return sequence

    def books_rebuilt(self) -> None:
        """The caller rebuilt its books (from a snapshot) after a lost gap: clear ``lost``."""
        self.lost = False

    def _evidence(self, session: bytes, high: int, now_ns: int) -> int:
        """One packet the followed session cannot have sent now (module docstring): adopt its
        session when the rule says so, else drop it."""
        if not self._from_live:
            return DROP
        if session != self._candidate or self._candidate_live_ns != self.last_live_ns:
            self._candidate = session                 # a new run: another name, or liveness since
            self._candidate_live_ns = self.last_live_ns
            self._candidate_packets = 0
        self._candidate_packets += 1
        self._candidate_high = high                   # the latest: an old straggler must not raise it for long
        if self._candidate_packets < ADOPT_AFTER_PACKETS:
            return DROP
        if not (self.ended and session != self.session) and self.last_live_ns is not None \
                and now_ns - self.last_live_ns < self.silence_ns:
            return DROP
        self.session_restarts += 1
        self.last_restart = (self.session, self.next_expected, session, high)
        self.restart(session, high, now_ns)
        self.last_live_ns = now_ns                    # the adopted session just spoke
        return RESTARTED

    def restart(self, session: bytes, high_water: int, now_ns: int) -> None:
        """Follow ``session`` from sequence 1: forget everything held, clear ``lost`` and ``ended``,
        rebuild until ``high_water`` (every sequence below it is taken to exist) and ask for
        ``[1, high_water)`` at once; with ``skip_history``, follow from ``high_water`` and ask for
        nothing (the caller takes a snapshot). The caller clears its books."""
        self.session = session
        high = high_water if high_water > 1 else 1
        self.next_expected = self._origin = high if self.skip_history else 1
        self._high_water = self.rebuild_until = high
        self.ended = self.lost = False
        self._pending.clear()
        self._heap.clear()
        self._progress = False
        self._candidate = None
        self.rebuilds += 1
        if self._high_water > self.next_expected:
            self._request(now_ns)

    def _hold(self, buffer, nbytes: int, sequence: int, count: int, rx_ns: int, now_ns: int) -> int:
        high = self._high_water
        gap_was_open = high > self.next_expected
        if sequence > high:
            self.gaps += 1
        end = sequence + count
        if end > high:
            self._high_water = end
        pending = self._pending
        held = pending.get(sequence)
        if held is not None and held[2] >= count:
            self.duplicate_packets += 1
            result = DROP
        elif held is None and len(pending) >= self.max_buffered_packets:
            self.overflow_drops += 1              # inside the requested range: recovered by request
            result = DROP
        else:
            pending[sequence] = (bytes(memoryview(buffer)[:nbytes]), rx_ns, count, high)
            if held is None:
                heappush(self._heap, sequence)
            result = BUFFERED
        if not gap_was_open:
            self._request(now_ns)
        return result

    def _extend(self, sequence: int, now_ns: int) -> None:
        """A heartbeat or end of session says messages up to ``sequence - 1`` exist."""
        gap_was_open = self._high_water > self.next_expected
        self.gaps += 1
        self._high_water = sequence
        if not gap_was_open:
            self._request(now_ns)

    # ------------------------------------------------------------------ after a delivery

    def drain(self):
        """The held packets that are now in order, as ``(packet, nbytes, skip, rx_ns)``, removed
        from the store; wholly old ones are discarded. Call after every delivered packet and after
        ``poll`` returned True. Costs two attribute checks when no gap is open."""
        pending = self._pending
        if not pending:
            if self._progress:
                self._follow_up()
            return _NOTHING
        heap = self._heap
        expected = self.next_expected
        out = []
        while heap and heap[0] <= expected:
            sequence = heappop(heap)
            packet, rx_ns, count, high = pending.pop(sequence)
            end = sequence + count
            if end <= expected:
                self.duplicate_packets += 1
                continue
            if high > expected:
                self.messages_recovered += (end if end < high else high) - expected
            self.delivered_packets += 1
            self.messages_delivered += end - expected
            out.append((packet, len(packet), expected - sequence, rx_ns))
            expected = end
        self.next_expected = expected
        if self._progress:
            self._follow_up()
        return out

    # ------------------------------------------------------------------ every duty cycle

    def poll(self, now_ns: int) -> bool:
        """Re-send a request that timed out; give up after ``max_retries`` re-sends. True when
        a range was given up (call ``drain`` then). O(1) when no gap is open."""
        if self._high_water <= self.next_expected:
            return False
        self._now_ns = now_ns
        if self._progress:                        # progress that no drain() followed up
            self._follow_up()
            return False
        if now_ns - self._request_ns < self.request_timeout_ns:
            return False
        if self._attempts < self.max_retries:
            self._attempts += 1
            self.retries += 1
            self._send(now_ns)
            return False
        # give up on the range up to the first held packet (all of it if nothing is held)
        expected = self.next_expected
        target = self._heap[0] if self._pending else self._high_water
        if target > expected:
            self.messages_lost += target - expected
            self.next_expected = target
        self.gaps_abandoned += 1
        self.lost = True
        self._progress = True                     # drain() delivers what follows and asks for the rest
        return True

    # ------------------------------------------------------------------ requests

    def _follow_up(self) -> None:
        self._progress = False
        if self._high_water > self.next_expected:
            self._request(self._now_ns)

    def _request(self, now_ns: int) -> None:
        self._attempts = 0
        self._send(now_ns)

    def _send(self, now_ns: int) -> None:
        first = self.next_expected
        count = min(self._high_water - first, self.max_request_count)
        self._request_ns = now_ns
        self.requests_sent += 1
        self.last_request = (first, count)
        self.send_request(moldudp64.request(self.session, first, count))
