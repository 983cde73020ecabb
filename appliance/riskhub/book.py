"""The firm's book: every appliance's executions summed per symbol, marked, checked against limits.

Fed with the drop copy's events (one JSON object per OMS journal record: the audit trail's columns,
``oms/audit.py``, plus ``appliance`` and ``trading_day``) and the appliances' marks. Each
appliance's fills go through the OMS's own position arithmetic (``oms.positions.PositionLedger``:
position, cost basis, realized P&L), so the hub's figures are the OMS's figures summed, not a second
rule for them. A broken trade undoes its fill as the OMS does. Only an appliance's latest trading
day counts (a journal, and the OMS's positions, start each day flat).

The peak P&L (the drawdown's reference) moves only when marks are applied, to the P&L at that
point: the marks are in the stream with the events (``appliance.<name>.marks``), so a hub that
reads the stream again from its first message meets them in the same order and rebuilds the same
peak; a peak moved whenever the figures happened to be looked at would be lost with the hub. The
peak is therefore sampled every ``firm.marks_ms`` of each appliance (no marks: it stays at 0).

Nothing from the network is believed: an event that does not have the shape it must have raises
``EventError`` (the hub counts and drops it), never anything else.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

from appliance.messages.codes import MARKET_PRICE, PRICE_SCALE
from appliance.oms.audit import parse_price
from appliance.oms.positions import PositionLedger

ORDER_EVENTS = frozenset(("SENT_NEW", "SENT_REPLACE", "SENT_CANCEL"))
SIDES = {"B": 1, "S": -1, "T": -1, "E": -1}      # OUCH: buy, sell, sell short, sell short exempt
MAX_SHARES = 10**9
MAX_MARK = 10**12
RATE_WINDOW_NS = 1_000_000_000

# The named reasons of a firm limit breach (FirmBook.breaches).
FIRM_MAX_POSITION = "FIRM_MAX_POSITION"
FIRM_GROSS_EXPOSURE = "FIRM_GROSS_EXPOSURE"
FIRM_NET_EXPOSURE = "FIRM_NET_EXPOSURE"
FIRM_DAILY_LOSS = "FIRM_DAILY_LOSS"
FIRM_DRAWDOWN = "FIRM_DRAWDOWN"


class EventError(ValueError):
    """An event or marks message without the shape it must have (the message says what)."""


def _int(event: dict, key: str, lo: int, hi: int) -> int:
    value = event.get(key)
    if type(value) is not int or not lo <= value <= hi:
        raise EventError(f"{key} must be an integer {lo}..{hi}, got {str(value)[:40]!r}")
    return value


def _fill_of(event: dict) -> tuple[str, int, int, int]:
    """(symbol, signed shares, price, match number) of an EXECUTED event."""
    symbol = _str(event, "symbol", 8)
    side = _str(event, "side", 1)
    shares = _int(event, "shares", 1, MAX_SHARES)
    match = _int(event, "match_number", 0, 2**64 - 1)
    try:
        price = parse_price(event.get("price"))
    except ValueError as exc:
        raise EventError(str(exc)) from None
    if not symbol or price == MARKET_PRICE:
        raise EventError("an execution needs a symbol and a price")
    if side not in SIDES:
        raise EventError(f"execution {match} of {symbol} has no known side ({side!r}): the drop copy did not "
                         "know its order")
    return symbol, SIDES[side] * shares, price, match


def _str(event: dict, key: str, limit: int = 64) -> str:
    value = event.get(key)
    if not isinstance(value, str) or len(value) > limit:
        raise EventError(f"{key} must be a string of at most {limit} characters, got {str(value)[:40]!r}")
    return value


_I63 = 2**63 - 1


def _header_of(event: dict, subject_appliance: str) -> tuple:
    """(appliance, trading day, sequence, event, time_ns) of an event, each checked in turn:
    EventError for the first that is not what it must be."""
    appliance = _str(event, "appliance")
    if appliance != subject_appliance:
        raise EventError(f"event of {appliance[:64]!r} on the subject of {subject_appliance!r}")
    return (appliance, _int(event, "trading_day", 19_700_101, 99_991_231), _int(event, "sequence", 1, _I63),
            _str(event, "event"), _int(event, "time_ns", 0, _I63))


@dataclass
class _Appliance:
    """One appliance's day: where its events are, its positions, the fills a break may undo."""
    day: int
    last_sequence: int = 0
    ledger: PositionLedger = field(default_factory=lambda: PositionLedger(0))
    fills: dict = field(default_factory=dict)      # match number -> (symbol id, signed shares, price)
    events: int = 0


def dollars(value: int) -> float:
    return value / PRICE_SCALE


class FirmBook:
    """Positions, exposure and P&L of the whole firm; ``apply`` an event, ``apply_marks``, ``figures``."""

    def __init__(self):
        self.symbol_ids: dict[str, int] = {}
        self.appliances: dict[str, _Appliance] = {}
        self.marks: dict[str, int] = {}             # symbol -> the latest mark any appliance published
        self.last_price: dict[str, int] = {}        # symbol -> the latest fill price (the mark until one comes)
        self.applied = self.duplicates = self.old_days = 0     # events taken; seen before; of an earlier day
        self.peak_pnl = 0                           # moved at each marks message only (see the module's text)
        self._order_times: collections.deque = collections.deque()
        self._latest_ns = 0

    # ------------------------------------------------------------------ input

    def apply(self, subject_appliance: str, event) -> bool:
        """One event from ``appliance.<subject_appliance>.events``; False when it is a duplicate or
        of an earlier trading day (nothing changed); EventError when it is not an event."""
        if not isinstance(event, dict):
            raise EventError(f"an event is a JSON object, got {type(event).__name__}")
        get = event.get                   # the usual event checked inline (every event comes here); else
        appliance, day, sequence, kind, time_ns = (get("appliance"), get("trading_day"), get("sequence"),
                                                   get("event"), get("time_ns"))
        if not (type(appliance) is str and appliance == subject_appliance and len(appliance) <= 64
                and type(day) is int and 19_700_101 <= day <= 99_991_231 and type(sequence) is int
                and 1 <= sequence <= _I63 and type(kind) is str and len(kind) <= 64 and type(time_ns) is int
                and 0 <= time_ns <= _I63):
            appliance, day, sequence, kind, time_ns = _header_of(event, subject_appliance)   # ... one by one, said
        fill = _fill_of(event) if kind == "EXECUTED" else None     # checked whole before anything changes
        book = self.appliances.get(appliance)
        if book is not None and day < book.day:
            self.old_days += 1
            return False
        if book is not None and day == book.day and sequence <= book.last_sequence:
            self.duplicates += 1
            return False
        if kind == "BROKEN":
            match = _int(event, "match_number", 0, 2**64 - 1)
            if book is None or day > book.day or match not in book.fills:
                raise EventError(f"broken trade {match}: no such execution of this appliance today")
        if book is None or day > book.day:
            book = self.appliances[appliance] = _Appliance(day)
        if fill is not None:
            self._executed(book, *fill)
        elif kind == "BROKEN":
            sid, signed, price = book.fills.pop(match)
            book.ledger.fill(sid, -signed, price)
            book.ledger.fills[sid] -= 1
        elif kind in ORDER_EVENTS:
            self._order(time_ns)
        book.last_sequence = sequence
        book.events += 1
        self.applied += 1
        return True

    def _symbol(self, name: str) -> int:
        sid = self.symbol_ids.get(name)
        if sid is None:
            sid = self.symbol_ids[name] = len(self.symbol_ids)
        return sid

    def _executed(self, book: _Appliance, symbol: str, signed: int, price: int, match: int) -> None:
        sid = self._symbol(symbol)
        if sid >= len(book.ledger.position):     # a symbol new to this appliance's ledger
            book.ledger.grow(len(self.symbol_ids))
        book.ledger.fill(sid, signed, price)
        book.ledger.fills[sid] += 1
        book.fills[match] = (sid, signed, price)
        self.last_price[symbol] = price

    def _order(self, time_ns: int) -> None:
        times = self._order_times
        times.append(time_ns)
        self._latest_ns = max(self._latest_ns, time_ns)
        while times and times[0] <= self._latest_ns - RATE_WINDOW_NS:
            times.popleft()

    def apply_marks(self, subject_appliance: str, message) -> int:
        """``{"appliance": A, "time_ns": T, "marks": {"AAPL": 1900100, ...}}`` (prices with 4 implied
        decimals; 0: no mark); the number of marks taken. EventError when it is not that."""
        if not isinstance(message, dict):
            raise EventError(f"marks are a JSON object, got {type(message).__name__}")
        if _str(message, "appliance") != subject_appliance:
            raise EventError("marks of another appliance on this subject")
        _int(message, "time_ns", 0, 2**63 - 1)
        marks = message.get("marks")
        if not isinstance(marks, dict) or len(marks) > 100_000:
            raise EventError("marks must be a mapping of symbol to price")
        taken = {}
        for symbol, price in marks.items():
            if not isinstance(symbol, str) or not 0 < len(symbol) <= 8 or type(price) is not int \
                    or not 0 <= price <= MAX_MARK:
                raise EventError(f"mark {str(symbol)[:10]!r}: {str(price)[:20]!r} is not a symbol and a price")
            if price:
                taken[symbol] = price
        self.marks.update(taken)
        self.peak_pnl = max(self.peak_pnl, self.pnl())
        return len(taken)

    # ------------------------------------------------------------------ output

    def mark_of(self, symbol: str) -> int:
        return self.marks.get(symbol) or self.last_price.get(symbol, 0)

    def pnl(self) -> int:
        """The firm's realized plus marked P&L now (what ``figures`` says, without the rest)."""
        total = 0
        for name, sid in self.symbol_ids.items():
            mark = self.mark_of(name)
            for book in self.appliances.values():
                ledger = book.ledger
                if sid < len(ledger.position):
                    total += ledger.realized_pnl[sid] + (ledger.position[sid] * mark - ledger.cost_basis[sid]
                                                         if mark else 0)
        return total

    def figures(self) -> dict:
        """Per symbol and for the firm: position, realized, marked (unrealized) and total P&L,
        gross and net exposure (money in price units x shares), orders per second, the peak P&L
        and the drawdown from it (never below 0: the P&L between two marks may be above the peak)."""
        symbols = {}
        gross = net = realized = unrealized = 0
        for name, sid in self.symbol_ids.items():
            position = cost = gained = 0
            per_appliance = {}
            for appliance, book in self.appliances.items():
                ledger = book.ledger
                if sid < len(ledger.position) and (ledger.position[sid] or ledger.fills[sid]):
                    per_appliance[appliance] = ledger.position[sid]
                    position += ledger.position[sid]
                    cost += ledger.cost_basis[sid]
                    gained += ledger.realized_pnl[sid]
            mark = self.mark_of(name)
            marked = position * mark - cost if mark else 0
            symbols[name] = {"position": position, "by_appliance": per_appliance, "mark": mark,
                             "realized_pnl": gained, "unrealized_pnl": marked, "exposure": position * mark}
            gross += abs(position) * mark
            net += position * mark
            realized += gained
            unrealized += marked
        pnl = realized + unrealized
        return {"symbols": symbols, "gross_exposure": gross, "net_exposure": net, "realized_pnl": realized,
                "unrealized_pnl": unrealized, "pnl": pnl, "peak_pnl": self.peak_pnl,
                "drawdown": max(0, self.peak_pnl - pnl), "orders_per_s": len(self._order_times),
                "appliances": {name: {"trading_day": b.day, "last_sequence": b.last_sequence, "events": b.events}
                               for name, b in self.appliances.items()},
                "applied": self.applied, "duplicates": self.duplicates}

    @staticmethod
    def breaches(figures: dict, limits) -> dict[tuple[str, str], str]:
        """(named reason, symbol or "") -> what was breached, in words (dollars, shares)."""
        found = {}
        for symbol, v in figures["symbols"].items():
            limit = limits.position_limit(symbol)
            if limit is not None and abs(v["position"]) > limit:
                found[(FIRM_MAX_POSITION, symbol)] = f"firm position in {symbol} {v['position']:+d} beyond {limit} shares"
        checks = ((FIRM_GROSS_EXPOSURE, abs(figures["gross_exposure"]), limits.max_gross_exposure, "gross exposure"),
                  (FIRM_NET_EXPOSURE, abs(figures["net_exposure"]), limits.max_net_exposure, "net exposure"),
                  (FIRM_DAILY_LOSS, -figures["pnl"], limits.max_daily_loss, "loss"),
                  (FIRM_DRAWDOWN, figures["drawdown"], limits.max_drawdown, "drawdown"))
        for reason, value, limit, what in checks:
            if limit is not None and value > limit:
                found[(reason, "")] = f"firm {what} ${dollars(value):,.2f} beyond ${dollars(limit):,.2f}"
        return found
