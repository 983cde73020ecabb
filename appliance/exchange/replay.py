"""Replay mode of the simulated exchange: a recorded ITCH day on the feed, the firms' orders against it.

``ReplayDay`` stands where ``Venue`` stands for a live day (the server drives it through the same
calls: ``open``, ``client_message``, ``session_lost``, ``close``, ``stores``, ``touched``,
``publisher``), but its market data is the day file's messages, published unchanged over
MoldUDP64 as the event time reaches them, and the firms' OUCH orders are matched by the venue
model of ``appliance.replay`` (the backtest's, the one venue model: queue position, trade-through,
marketable orders taking recorded liquidity once). The recorded book is never changed by our
orders (it is what the strategy sees), so the feed carries exactly the recorded day.

Event time: the recorded messages' ITCH timestamps. ``advance()`` publishes every message whose
timestamp the replay clock has reached, ``first timestamp + (wall - start) x speed``, or with
``speed`` None ("max") as fast as the loop goes, ``MAX_BATCH`` messages per call so that orders,
re-requests and snapshots are served in between. The messages of one timestamp go out in packets of
their own (the feed makes one BookUpdate per changed symbol and packet, as the backtest does per
timestamp), after the firms' answers they caused (``answer_lead_ns``: the backtest's order at equal
times). An order that arrives is stamped with the event time of the last timestamp applied (what the
firm had seen at most); the venue model handles it after the recorded messages of that timestamp
(``ReplayVenue``'s rule), at once when the next recorded message is later. OUCH answers carry the
event time as their timestamp.

The day: ``open`` publishes nothing of its own (the file has its System Events and Stock
Directory) and tells every firm OUCH System Event 'S'. Until ``start`` (``--replay-hold``: the
control command ``start``) only the day's preamble goes out, the leading messages of
``PREAMBLE_TYPES``, so the feed has its directory and can say it is ready (the appliance's gate
opens on that); the event clock then starts at the first message after it. At the end of the
file: the open orders expire (Canceled 'T'), MoldUDP64 End of Session and OUCH System Event 'E', as
a live close. A firm whose session is lost with cancel on disconnect gets its orders canceled 'Z'.

Snapshots (GLIMPSE, ``snapshot``): the recorded book of every listed symbol as the replay stands,
so a feed that joins late rebuilds from it like from a live venue.

Day file errors: a bad block stops the day there (the feed gets what came before, the log says
the offset and why; ``error``), as a file cut mid-message does.
"""
from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from appliance.replay.latency import Latency
from appliance.replay.venue import (
    ACCEPTED, CANCEL_REJECT, CANCELED, EXECUTED, REJECTED, REPLACED, ReplayVenue, VenueEvent,
)
from appliance.wire import glimpse, itch, moldudp64
from appliance.wire.dayfile import DayFileReader
from appliance.wire.errors import WireFormatError
from appliance.wire.soupbintcp_session import SequencedStore

from . import itch_encoder as ie
from .events import (
    CANCEL_SYSTEM, CANCEL_TIMEOUT, Accepted, CancelReject, Canceled, Executed, Rejected, Replaced,
)
from .market_data import FeedFaults, MoldPublisher
from .order_entry import (
    CANCEL, DEFAULT_ECHO, ENTER, MODIFY, REPLACE, SYSTEM_END_OF_DAY, SYSTEM_START_OF_DAY, EchoFields, OuchEncoder,
    parse_inbound,
)
from .records import INBOUND, OUTBOUND, Records
from .report import FirmLedger

MAX_BATCH = 2_000               # recorded messages per advance() at --speed max
# The day's preamble: what a feed needs before the first order (system events, the stock directory,
# trading states...); a held replay publishes the leading messages of these types at once.
PREAMBLE_TYPES = frozenset(b"SRHYLVWKJh")
STATE_LIVE = "L"


@dataclass(frozen=True)
class ReplaySettings:
    """``appliance exchange --replay DAYFILE [--speed X|max] [--replay-hold] [--queue-model NAME]``."""
    day_file: str
    speed: float | None = 1.0        # None: as fast as the loop goes
    hold: bool = False               # wait for the control command ``start`` (else start at once)
    queue_model: str = "risk-averse"
    seed: int = 0
    answer_lead_ms: float = 0.0      # how long market data waits behind the answers it caused


@dataclass
class ReplayCounters:
    client_messages: int = 0         # OUCH messages received from firms
    malformed: int = 0               # of which dropped as malformed (or sent outside the day)
    modify_unsupported: int = 0      # Modify Order answered with Cancel Reject
    recorded_messages: int = 0       # day-file messages published
    orders: int = 0                  # Enter Order messages handed to the venue model
    fills: int = 0                   # Executed messages sent


@dataclass
class _Ours:
    """One OUCH token of a firm, as the venue model's int token knows it."""
    firm: str
    token: str
    side: str = ""
    symbol: str = ""
    price: int = 0
    tif: int = 0
    display: str = "Y"
    echo: EchoFields = DEFAULT_ECHO


class ReplayDay:
    """One recorded day replayed (the module docstring); ``symbols``: the listed ones, whose orders the
    venue model matches; ``speed``: event seconds per wall second, None for as fast as possible."""

    # control commands of a live day that have no meaning here (the recorded book is not ours to change)
    unsupported_commands = frozenset(("halt", "resume", "burst", "background", "cancel-all", "book"))

    def __init__(self, day_file: str, symbols: Iterable[str], firms: Mapping[str, str], *, session: str,
                 send_packet, speed: float | None = 1.0, max_payload: int = moldudp64.DEFAULT_MAX_PAYLOAD,
                 heartbeat_interval_ns: int = 1_000_000_000, faults: FeedFaults | None = None,
                 records: Records | None = None, cancel_on_disconnect: Iterable[str] = (),
                 queue_model: str = "risk-averse", latency: Latency | None = None, seed: int = 0,
                 answer_lead_ns: int = 0, wall_clock=time.monotonic_ns) -> None:
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be positive (or None for max), got {speed!r}")
        self.day_file = day_file
        self.session = session
        self.speed = speed
        self.symbols = tuple(symbols)
        self.firms = dict(firms)
        self.cancel_on_disconnect = frozenset(cancel_on_disconnect)
        self.model = ReplayVenue(self.symbols, queue_model, latency or Latency.zero(), seed)
        self.publisher = MoldPublisher(session, send_packet, max_payload=max_payload,
                                       heartbeat_interval_ns=heartbeat_interval_ns, faults=faults)
        self.store = self.publisher.store
        self.stores = {firm: SequencedStore(session) for firm in self.firms}
        self.ledgers = {firm: FirmLedger(firm) for firm in self.firms}
        self.ouch = OuchEncoder(self.firms)
        self.records = records
        self.wall_clock = wall_clock
        self.touched: set[str] = set()
        self.counters = ReplayCounters()
        self.canceled_on_disconnect = {firm: 0 for firm in self.firms}
        self.state = "pending"              # -> "open" -> "closed"
        self.started = False                # the recorded messages flow (``start``)
        self.error: str | None = None       # why the day file stopped early
        self.now_ns = 0                     # event time: the last recorded message published
        self._reader = DayFileReader(day_file)
        self._messages = self._reader.iter_raw()
        self._next = None                   # the next recorded message (raw tuple), not yet published
        self._first_ns = 0
        self._wall_start = 0
        self._tokens: dict[tuple[str, str], int] = {}
        self._ours: dict[int, _Ours] = {}
        self._reasons: dict[int, str] = {}  # a cancel the venue asked for itself: its OUCH reason
        self._match = 0
        self._directory: dict[int, bytes] = {}   # locate -> its recorded Stock Directory (for snapshots)
        self._pack = bytearray(64)
        self.answer_lead_ns = answer_lead_ns  # how long a packet waits behind the answers it caused
        self._held: list | None = None        # a timestamp applied and answered, its packet not yet out
        self._held_until = 0

    # ------------------------------------------------------------------ the day

    def open(self) -> None:
        if self.state != "pending":
            raise RuntimeError(f"the replay is {self.state}")
        self._next = self._read()
        first_ns = self._next[itch.TIMESTAMP_INDEX] if self._next is not None else 0
        for firm in self.stores:
            self._to_firm(firm, self.ouch.system_event(SYSTEM_START_OF_DAY, first_ns))
        self.state = "open"

    def start(self) -> None:
        """Let the recorded messages flow from now (the event clock starts at the first message)."""
        if not self.started:
            self.started = True
            self._wall_start = self.wall_clock()
            self._first_ns = self._next[itch.TIMESTAMP_INDEX] if self._next is not None else 0

    @property
    def finished(self) -> bool:
        """Every recorded message is out (the day closes at the next ``advance``)."""
        return self.started and self._next is None

    def advance(self) -> int | None:
        """Publish the recorded messages due now; returns the wall ns when to call again (the next
        message's due time, now when more is ready), or None when the recorded day is over (the day
        is then closed).

        A timestamp whose messages made the venue model answer a firm (a fill, an order resting)
        is applied, answered, and its packet held back until the next call, ``answer_lead_ns``
        later: the server sends the answers in between, so a firm hears what happened to its orders
        before the market data of the same instant, the backtest's order at equal times."""
        if self.state != "open":
            return None
        if not self.started:
            self._preamble()
            return self.wall_clock() + 1_000_000
        now_wall = self.wall_clock()
        if self._held is not None:
            if now_wall < self._held_until:
                return self._held_until
            self._release_held()
        limit = None if self.speed is None else self._first_ns + int((now_wall - self._wall_start) * self.speed)
        published = 0
        while self._next is not None and (limit is None or self._next[itch.TIMESTAMP_INDEX] <= limit):
            group = self._apply_group()
            if self._deliver(self.now_ns):
                self._held, self._held_until = group, now_wall + self.answer_lead_ns
                return self._held_until
            self._publish_group(group)
            published += len(group)
            if limit is None and published >= MAX_BATCH:
                return now_wall
        raw = self._next
        if raw is None:
            self.close()
            return None
        if limit is None:
            return now_wall
        if raw[itch.TIMESTAMP_INDEX] > self.now_ns:
            self.model.advance(min(limit, raw[itch.TIMESTAMP_INDEX] - 1))   # actions due before the next message
        self._deliver(limit)
        return self._wall_start + int((raw[itch.TIMESTAMP_INDEX] - self._first_ns) / self.speed)

    def _release_held(self) -> None:
        """The held timestamp's packet out now (the day ends, a snapshot must match the feed)."""
        if self._held is not None:
            held, self._held = self._held, None
            self._publish_group(held)

    def _apply_group(self) -> list:
        """The next timestamp's messages, read and applied to the venue model (not yet published)."""
        raw = self._next
        stamp = raw[itch.TIMESTAMP_INDEX]
        group, on_itch = [], self.model.on_itch
        while raw is not None and raw[itch.TIMESTAMP_INDEX] == stamp:
            on_itch(raw)
            group.append(raw)
            raw = self._next = self._read()
        self.now_ns = stamp
        return group

    def _publish_group(self, group: list) -> None:
        """One timestamp's messages on the feed, in packets of their own."""
        publish = self._publish_recorded
        for raw in group:
            publish(raw)
        self.publisher.flush()
        self.counters.recorded_messages += len(group)

    def _preamble(self) -> None:
        """Publish the leading messages of ``PREAMBLE_TYPES`` not yet out (before ``start``)."""
        raw, published, stamp = self._next, 0, self.now_ns
        while raw is not None and raw[0][0] in PREAMBLE_TYPES:
            if raw[itch.TIMESTAMP_INDEX] != stamp:         # one packet per timestamp, as in advance()
                self.publisher.flush()
                stamp = raw[itch.TIMESTAMP_INDEX]
            self._publish_recorded(raw)
            self.model.on_itch(raw)
            self.now_ns = raw[itch.TIMESTAMP_INDEX]
            published += 1
            raw = self._next = self._read()
        if published:
            self.counters.recorded_messages += published
            self.publisher.flush()

    def _read(self):
        try:
            return next(self._messages, None)
        except WireFormatError as exc:
            self.error = f"{self.day_file}: offset {exc.offset}: {exc.reason}"
            return None

    def _publish_recorded(self, raw) -> None:
        layout = itch.LAYOUT_BY_BYTE[raw[0][0]]
        buffer = self._pack
        layout.pack_into(buffer, 0, *raw)
        message = bytes(buffer[:layout.size])
        if raw[0] == b"R":
            self._directory[raw[1]] = message
        self.publisher.publish(message)
        if self.records is not None:
            self.records.itch(message)

    def close(self) -> None:
        """End the day (idempotent): open orders expire 'T', End of Session on both protocols."""
        if self.state == "closed":
            return
        if self.state == "pending":
            self.open()
        self._release_held()
        self._cancel_live(None, CANCEL_TIMEOUT)
        self.publisher.end_session()
        for firm, store in self.stores.items():
            self._to_firm(firm, self.ouch.system_event(SYSTEM_END_OF_DAY, self.now_ns))
            store.ended = True
        self.state = "closed"
        if self.records is not None:
            self.records.write_report(self.report())
            self.records.close()

    # ------------------------------------------------------------------ orders

    def client_message(self, firm: str, message: bytes) -> str | None:
        """One OUCH message from a logged-in firm. Returns None, or the reason it was dropped."""
        self.counters.client_messages += 1
        if self.state != "open":
            self.counters.malformed += 1
            return f"the trading day has {'ended' if self.state == 'closed' else 'not started'}"
        if self.records is not None:
            self.records.ouch(firm, INBOUND, time.time_ns(), message)
        try:
            kind, v = parse_inbound(message)
        except WireFormatError as exc:
            self.counters.malformed += 1
            return str(exc)
        now, model = self.now_ns, self.model
        if kind == ENTER:
            token, side, shares, symbol, price, tif, _firm, display, capacity, ise, minimum, cross, _customer = v
            number = self._number(firm, token)
            ours = self._ours[number]
            if not ours.symbol:            # the first use of the token (a reused one is rejected 'O' by the model)
                ours.side, ours.symbol, ours.price, ours.tif = side, symbol, price, tif
                ours.display, ours.echo = display.decode("latin-1"), EchoFields(capacity, ise, minimum, cross)
            self.counters.orders += 1
            model.submit(number, symbol, side, shares, price, tif, now)
        elif kind == CANCEL:
            token, shares = v
            model.cancel(self._number(firm, token), now, shares)
        elif kind == REPLACE:
            existing, replacement, shares, price, tif, display, ise, minimum = v
            old = self._ours[self._number(firm, existing)]
            number = self._number(firm, replacement)
            new = self._ours[number]
            if not new.symbol:
                new.side, new.symbol, new.price, new.tif = old.side, old.symbol, price, old.tif
                new.display = display.decode("latin-1")
                new.echo = EchoFields(old.echo.capacity, ise, minimum, old.echo.cross_type)
            model.replace(self._number(firm, existing), number, shares, price, now)
        else:
            assert kind == MODIFY
            self.counters.modify_unsupported += 1      # as the live venue: Order Modified is not spoken here
            self._to_firm(firm, self.ouch.encode(CancelReject(firm, v[0]), now))
            return None
        if self._next is None or self._next[itch.TIMESTAMP_INDEX] > now:
            model.advance(now)                     # no recorded message of this stamp is still to come
        self._deliver(now)
        return None

    def session_lost(self, firm: str) -> int | None:
        """With cancel on disconnect: the firm's open orders canceled 'Z', their number; else None."""
        if firm not in self.cancel_on_disconnect:
            return None
        if self.state != "open":
            return 0
        canceled = self._cancel_live(firm, CANCEL_SYSTEM)
        self.canceled_on_disconnect[firm] += canceled
        return canceled

    def live_count(self, firm: str) -> int:
        """The firm's orders open at the venue model."""
        return sum(1 for number in self.model.live if self._ours[number].firm == firm)

    def _cancel_live(self, firm: str | None, reason: str) -> int:
        numbers = [n for n in self.model.live if firm is None or self._ours[n].firm == firm]
        for number in numbers:
            self._reasons[number] = reason
            self.model.cancel(number, self.now_ns)
        self.model.advance(self.now_ns)
        self._deliver(None)
        return len(numbers)

    def _number(self, firm: str, token: str) -> int:
        """The venue model's int token for a firm's OUCH token (the same one for a token used again)."""
        key = (firm, token)
        number = self._tokens.get(key)
        if number is None:
            number = self._tokens[key] = len(self._tokens) + 1
            self._ours[number] = _Ours(firm, token)
        return number

    def _deliver(self, now_ns: int | None) -> int:
        """The venue model's events due by ``now_ns`` (all with None), as OUCH to their firms: how many."""
        events = self.model.poll(now_ns if now_ns is not None else 1 << 62)
        for event in events:
            self._answer(event)
        return len(events)

    def _answer(self, event: VenueEvent) -> None:
        ours = self._ours[event.token]
        firm, token, kind = ours.firm, ours.token, event.kind
        echo = DEFAULT_ECHO
        if kind == ACCEPTED:
            echo = ours.echo
            out = Accepted(firm, token, event.side, event.shares, event.symbol, event.price, ours.tif, ours.display,
                           event.token, STATE_LIVE)
        elif kind == REPLACED:
            echo = ours.echo
            out = Replaced(firm, token, self._ours[event.orig_token].token, event.side, event.shares, event.symbol,
                           event.price, ours.tif, ours.display, event.token, STATE_LIVE)
        elif kind == EXECUTED:
            self._match += 1
            self.counters.fills += 1
            out = Executed(firm, token, event.shares, event.price, event.liquidity, self._match)
        elif kind == CANCELED:
            out = Canceled(firm, token, event.shares, self._reasons.pop(event.token, event.reason))
        elif kind == REJECTED:
            out = Rejected(firm, token, event.reason)
        else:
            assert kind == CANCEL_REJECT
            self._reasons.pop(event.token, None)
            out = CancelReject(firm, token)
        self.ledgers[firm].apply(out, time.time_ns())
        self._to_firm(firm, self.ouch.encode(out, event.time_ns, echo))

    def _to_firm(self, firm: str, message: bytes) -> None:
        self.stores[firm].append(message)
        self.touched.add(firm)
        if self.records is not None:
            self.records.ouch(firm, OUTBOUND, time.time_ns(), message)

    # ------------------------------------------------------------------ snapshots and reporting

    def snapshot(self) -> list[bytes]:
        """GLIMPSE: the recorded book of the listed symbols now, the next ITCH sequence last (a held
        packet goes out first: the book the snapshot shows is every message before that sequence)."""
        self._release_held()
        event = ie.START_OF_MARKET_HOURS if self.state == "open" else \
            ie.END_OF_MESSAGES if self.state == "closed" else ie.START_OF_MESSAGES
        ts = self.now_ns
        out = [itch.encode({"type": "S", "stock_locate": 0, "tracking_number": 0, "timestamp": ts,
                            "event_code": event})]
        by_book: dict[int, list] = {}
        for ref, (book, is_buy, price, shares, added) in self.model.orders.items():
            by_book.setdefault(book.sid, []).append((not is_buy, -price if is_buy else price, added, ref, shares))
        for book in self.model.books:
            if book.locate is None or book.locate not in self._directory:
                continue
            out.append(self._directory[book.locate])
            out.append(itch.encode({"type": "H", "stock_locate": book.locate, "tracking_number": 0, "timestamp": ts,
                                    "stock": book.symbol, "trading_state": "H" if book.halted else "T",
                                    "reserved": " ", "reason": ""}))
            for is_ask, key, _added, ref, shares in sorted(by_book.get(book.sid, ())):   # bids best first, then asks
                out.append(itch.encode({"type": "A", "stock_locate": book.locate, "tracking_number": 0,
                                        "timestamp": ts, "order_reference_number": ref,
                                        "buy_sell_indicator": "S" if is_ask else "B", "shares": shares,
                                        "stock": book.symbol, "price": key if is_ask else -key}))
        out.append(glimpse.snapshot(self.store.next_sequence))
        return out

    def report(self) -> dict:
        return {"session": self.session, "replay": {"day_file": self.day_file, "speed": self.speed or "max",
                                                    "error": self.error, **self.counters.__dict__,
                                                    "venue_model": dict(self.model.counters)},
                "firms": {firm: ledger.as_dict() for firm, ledger in sorted(self.ledgers.items())}}

    def status(self) -> dict:
        return {"day_file": self.day_file, "speed": self.speed or "max", "started": self.started,
                "event_time_ns": self.now_ns, "error": self.error, "counters": self.counters.__dict__.copy(),
                "live_orders": {firm: self.live_count(firm) for firm in self.firms}}
