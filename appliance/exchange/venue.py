"""The venue: the matching engine wired to its two outputs, with no sockets and no event loop.

Every request (a firm's OUCH message, a background participant's order, an operator's halt)
goes through one path: the engine operation, then ``_dispatch`` of the events it returned:
market-data events are encoded as ITCH and handed to the ``MoldPublisher`` (and the day
file); order-entry events are encoded as OUCH and appended to the firm's ``SequencedStore``
(and its log and ledger). The store outlives the firm's TCP connections, which is how a
re-login replays exactly what the firm missed. Firms whose store got messages are collected
in ``touched`` so the server knows whose connection to pump.

The trading day: ``open`` sends System Event 'O', one Stock Directory per symbol, 'S' and
'Q', and OUCH System Event 'S' to every firm; ``close`` rejects later entries, expires the
resting day orders (Canceled reason 'T', ITCH 'D'), sends 'M', 'E', 'C', the MoldUDP64
end of session and OUCH System Event 'E', and ends every firm's session.

Cancel on disconnect (per firm, ``cancel_on_disconnect``): the server calls ``session_lost``
whenever a firm's logged-in session ends during the day, however it ended (TCP close or
reset, peer timeout, the control socket's ``disconnect``, a protocol error, or the firm's own
Logout Request: OUCH's cancel on disconnect is about the session being gone, and a firm that
logged out is no more there to manage its orders than one that crashed). Every open order of
such a firm is canceled like any other cancel, through ``_dispatch``: OUCH Canceled with
reason 'Z' ("system cancel: this order was cancelled by the system"; 'S' stays the
supervisory kill switch) into the firm's store, where the next login's replay finds it, ITCH
'D' for the displayed ones, and the ledger. The end of the day is not a disconnect: by then
``close`` has expired the orders ('T').

Timestamps: one clock reading (epoch ns) per request; the wire carries ns since midnight.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from appliance.wire import moldudp64
from appliance.wire.errors import WireFormatError
from appliance.wire.soupbintcp_session import SequencedStore
from appliance.wire.venue_time import ns_since_midnight

from . import itch_encoder as ie
from .events import CANCEL_SYSTEM, CANCEL_TIMEOUT, MARKET_DATA, Accepted, CancelReject, Replaced
from .itch_encoder import ItchEncoder
from .market_data import FeedFaults, MessageStore, MoldPublisher
from .matching import MatchingEngine
from .order_entry import (
    CANCEL, DEFAULT_ECHO, ENTER, MODIFY, REPLACE, SYSTEM_END_OF_DAY, SYSTEM_START_OF_DAY, EchoFields, OuchEncoder,
    parse_inbound,
)
from .records import INBOUND, OUTBOUND, Records
from .report import FirmLedger, build_report


@dataclass
class VenueCounters:
    client_messages: int = 0         # OUCH messages received from firms
    malformed: int = 0               # of which dropped as malformed
    modify_unsupported: int = 0      # Modify Order answered with Cancel Reject
    background_operations: int = 0
    operator_actions: int = 0
    cancel_on_disconnect_sessions: int = 0   # lost sessions of firms with cancel on disconnect, during the day
    cancel_on_disconnect_orders: int = 0     # open orders those cancelled


class Venue:
    """One trading day of the simulated exchange."""

    unsupported_commands: frozenset = frozenset(("start",))    # control commands of the replay only

    def __init__(self, symbols: Iterable[tuple[str, int]], firms: Mapping[str, str], *, session: str,
                 send_packet: Callable[[bytes], None], max_shares: int = 1_000_000,
                 max_payload: int = moldudp64.DEFAULT_MAX_PAYLOAD, heartbeat_interval_ns: int = 1_000_000_000,
                 faults: FeedFaults | None = None, records: Records | None = None, background=None,
                 cancel_on_disconnect: Iterable[str] = (), clock: Callable[[], int] = time.time_ns) -> None:
        symbols = list(symbols)
        self.session = session
        self.clock = clock
        self.engine = MatchingEngine([s for s, _ in symbols], max_shares=max_shares)
        self.firms = dict(firms)                       # username -> mpid
        self.cancel_on_disconnect = frozenset(cancel_on_disconnect)
        unknown = self.cancel_on_disconnect - set(self.firms)
        if unknown:
            raise ValueError(f"cancel_on_disconnect names unknown firm(s) {', '.join(sorted(unknown))}")
        self.canceled_on_disconnect = {firm: 0 for firm in self.firms}   # orders, per firm, for the status
        mpids = dict(self.firms)
        if background is not None:
            mpids.setdefault(background.firm, background.firm[:4].upper().ljust(4, "X"))
        self.itch = ItchEncoder([s for s, _ in symbols], mpids=mpids, round_lots=dict(symbols))
        self.ouch = OuchEncoder(mpids)
        self.store = MessageStore()
        self.publisher = MoldPublisher(session, send_packet, self.store, max_payload=max_payload,
                                       heartbeat_interval_ns=heartbeat_interval_ns, faults=faults)
        self.stores = {firm: SequencedStore(session) for firm in self.firms}
        self.ledgers = {firm: FirmLedger(firm) for firm in self.firms}
        self._echo: dict[str, dict[str, EchoFields]] = {firm: {} for firm in self.firms}
        self.records = records
        self.background = background
        self.touched: set[str] = set()
        self.counters = VenueCounters()
        self.state = "pending"          # -> "open" -> "closed"

    # ------------------------------------------------------------------ the day

    def open(self) -> None:
        if self.state != "pending":
            raise RuntimeError(f"the venue is {self.state}")
        now = self.clock()
        ts = ns_since_midnight(now)
        publish = self._publish
        publish(self.itch.system_event(ie.START_OF_MESSAGES, ts))
        publish(self.itch.system_event(ie.START_OF_SYSTEM_HOURS, ts))
        for symbol in self.itch.symbols:
            publish(self.itch.stock_directory(symbol, ts))
        publish(self.itch.system_event(ie.START_OF_MARKET_HOURS, ts))
        self.publisher.flush()
        for firm in self.stores:
            self._to_firm(firm, self.ouch.system_event(SYSTEM_START_OF_DAY, ts), now)
        self.state = "open"

    def close(self) -> None:
        """End the trading day (idempotent)."""
        if self.state == "closed":
            return
        if self.state == "pending":
            self.open()
        engine = self.engine
        engine.close()
        now = self.clock()
        ts = ns_since_midnight(now)
        self._publish(self.itch.system_event(ie.END_OF_MARKET_HOURS, ts))
        for symbol in self.itch.symbols:
            events = engine.cancel_all(symbol=symbol, reason=CANCEL_TIMEOUT)
            if self.background is not None:
                self.background.observe(events)
            self._dispatch(events, self.itch.locate[symbol], now)
        self._publish(self.itch.system_event(ie.END_OF_SYSTEM_HOURS, ts))
        self._publish(self.itch.system_event(ie.END_OF_MESSAGES, ts))
        self.publisher.end_session()
        for firm, store in self.stores.items():
            self._to_firm(firm, self.ouch.system_event(SYSTEM_END_OF_DAY, ts), now)
            store.ended = True
        self.state = "closed"
        if self.records is not None:
            self.records.write_report(self.report())
            self.records.close()

    # ------------------------------------------------------------------ requests

    def client_message(self, firm: str, message: bytes) -> str | None:
        """One OUCH message from a logged-in firm. Returns None, or the reason it was dropped."""
        now = self.clock()
        self.counters.client_messages += 1
        if self.state != "open":
            self.counters.malformed += 1
            return f"the trading day has {'ended' if self.state == 'closed' else 'not started'}"
        if self.records is not None:
            self.records.ouch(firm, INBOUND, now, message)
        try:
            kind, v = parse_inbound(message)
        except WireFormatError as exc:
            self.counters.malformed += 1
            return str(exc)
        engine = self.engine
        echo = self._echo[firm]
        if kind == ENTER:
            token, side, shares, symbol, price, tif, _firm, display, capacity, ise, minimum, cross, _customer = v
            events = engine.enter(firm, token, symbol, side, shares, price, tif, display.decode("latin-1"),
                                  capacity=capacity.decode("latin-1"), iso=ise.decode("latin-1"),
                                  minimum_quantity=minimum)
            if type(events[0]) is Accepted:
                echo[token] = EchoFields(capacity, ise, minimum, cross)
            locate = self.itch.locate.get(symbol, 0)
        elif kind == CANCEL:
            token, shares = v
            locate = self._locate_of(firm, token)
            events = engine.cancel(firm, token, shares)
        elif kind == REPLACE:
            existing, replacement, shares, price, tif, display, ise, minimum = v
            locate = self._locate_of(firm, existing)
            events = engine.replace(firm, existing, replacement, shares, price, tif, display.decode("latin-1"),
                                    iso=ise.decode("latin-1"), minimum_quantity=minimum)
            if type(events[0]) is Replaced:
                old = echo.get(existing, DEFAULT_ECHO)
                echo[replacement] = EchoFields(old.capacity, ise, minimum, old.cross_type)
        else:
            assert kind == MODIFY
            # Order Modified ('M') is not in the outbound table this venue speaks: say no, visibly.
            self.counters.modify_unsupported += 1
            events = [CancelReject(firm, v[0])]
            locate = 0
        if self.background is not None:
            self.background.observe(events)     # a firm trading against the flow changes its record
        self._dispatch(events, locate, now)
        self.publisher.flush()
        return None

    def run_background(self, count: int) -> int:
        """``count`` background operations (the publisher is flushed by the caller's tick)."""
        flow = self.background
        if flow is None or self.state != "open":
            return 0
        engine, locate, dispatch, clock = self.engine, self.itch.locate, self._dispatch, self.clock
        for _ in range(count):
            events = flow.step(engine)
            dispatch(events, locate[flow.last_symbol], clock())
        self.counters.background_operations += count
        return count

    def halt(self, symbol: str) -> bool:
        return self.state == "open" and self._operator(self.engine.halt(symbol), symbol)

    def resume(self, symbol: str) -> bool:
        return self.state == "open" and self._operator(self.engine.resume(symbol), symbol)

    def cancel_all(self, firm: str | None = None, symbol: str | None = None) -> int:
        """The kill switch: cancel the live orders of ``firm`` and/or in ``symbol`` (all when both None)."""
        if self.state != "open":
            return 0
        symbols = [symbol] if symbol is not None else self.itch.symbols
        canceled = 0
        for s in symbols:
            events = self.engine.cancel_all(firm=firm, symbol=s)
            canceled += sum(1 for e in events if e.family != MARKET_DATA)
            self._operator(events, s)
        return canceled

    def session_lost(self, firm: str) -> int | None:
        """The firm's logged-in order-entry session ended during the day (any cause but the close).

        With cancel on disconnect, every open order of the firm is canceled (reason 'Z') and the
        number canceled is returned; without it, None (its orders stay resting).
        """
        if firm not in self.cancel_on_disconnect:
            return None
        if self.state != "open":
            return 0
        canceled = 0
        for symbol in self.itch.symbols:
            events = self.engine.cancel_all(firm=firm, symbol=symbol, reason=CANCEL_SYSTEM)
            if events:
                canceled += sum(1 for e in events if e.family != MARKET_DATA)
                self._dispatch(events, self.itch.locate[symbol], self.clock())
        self.publisher.flush()
        self.counters.cancel_on_disconnect_sessions += 1
        self.counters.cancel_on_disconnect_orders += canceled
        self.canceled_on_disconnect[firm] += canceled
        return canceled

    def live_count(self, firm: str) -> int:
        """The firm's open orders."""
        return len(self.engine.firms[firm].live) if firm in self.engine.firms else 0

    def _operator(self, events: list, symbol: str) -> bool:
        if self.state != "open":
            return False
        self.counters.operator_actions += 1
        if self.background is not None:
            self.background.observe(events)
        self._dispatch(events, self.itch.locate[symbol], self.clock())
        self.publisher.flush()
        return bool(events)

    def _locate_of(self, firm: str, token: str) -> int:
        f = self.engine.firms.get(firm)
        order = f.live.get(token) if f is not None else None
        return self.itch.locate[order.book.symbol] if order is not None else 0

    # ------------------------------------------------------------------ events out

    def _dispatch(self, events: list, locate: int, now: int) -> None:
        ts = ns_since_midnight(now)
        encode_itch = self.itch.encode
        publish = self._publish
        for event in events:
            if event.family == MARKET_DATA:
                publish(encode_itch(event, locate, ts))
            else:
                firm = event[0]
                store = self.stores.get(firm)
                if store is None:       # the background participants: no session, no ledger
                    continue
                echo = self._echo[firm].get(event[1], DEFAULT_ECHO) if type(event) in (Accepted, Replaced) \
                    else DEFAULT_ECHO
                self.ledgers[firm].apply(event, now)
                self._to_firm(firm, self.ouch.encode(event, ts, echo), now)

    def _publish(self, message: bytes) -> None:
        self.publisher.publish(message)
        if self.records is not None:
            self.records.itch(message)

    def _to_firm(self, firm: str, message: bytes, now: int) -> None:
        self.stores[firm].append(message)
        self.touched.add(firm)
        if self.records is not None:
            self.records.ouch(firm, OUTBOUND, now, message)

    # ------------------------------------------------------------------ reporting

    def report(self) -> dict:
        extra = {"feed": {"messages": len(self.store), "packets": self.publisher.counters.packets,
                          "dropped_packets": self.publisher.counters.dropped},
                 "counters": self.counters.__dict__.copy()}
        return build_report(self.session, self.ledgers, self.engine, detailed=set(self.firms), extra=extra)
