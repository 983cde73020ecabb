"""Turns the engine's market-data events into ITCH 5.0 messages (bytes), as NASDAQ would send them.

The engine's events carry no stock locate, timestamp or tracking number (see ``events.py``);
this step adds them. The locate of a symbol is its position in the configured symbol list
plus one, announced at the start of the day by one Stock Directory ('R') per symbol. An
order-level event ('E', 'X', 'D', 'U') names only an order reference number, so the caller
passes the locate of the operation that caused it: every engine operation acts on one symbol
(the venue calls ``cancel_all`` symbol by symbol for the same reason).

Timestamps are nanoseconds since midnight UTC (the wire's u48); the tracking number is 0.
Every message is packed straight from a precompiled ``struct`` (the declarative table in
``appliance.wire.itch`` gives the layouts; a test checks each against ``itch.decode``).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from appliance.wire import itch
from appliance.wire.schema import pad_alpha

from .events import AddOrder, OrderCancel, OrderDelete, OrderExecuted, OrderReplace, Trade, TradingAction

# System Event codes (ITCH 5.0 section 4.1).
START_OF_MESSAGES = "O"
START_OF_SYSTEM_HOURS = "S"
START_OF_MARKET_HOURS = "Q"
END_OF_MARKET_HOURS = "M"
END_OF_SYSTEM_HOURS = "E"
END_OF_MESSAGES = "C"

_BY_CODE = {layout.type_code: layout for layout in itch.MESSAGES}


class ItchEncoder:
    """ITCH bytes for one trading day's symbols. ``mpids`` maps engine firm names to the
    4-character MPID an attributed ('F') add order shows."""

    def __init__(self, symbols: Iterable[str], *, mpids: Mapping[str, str] | None = None,
                 round_lots: Mapping[str, int] | None = None) -> None:
        self.symbols: list[str] = list(symbols)
        self.locate: dict[str, int] = {symbol: i + 1 for i, symbol in enumerate(self.symbols)}
        if len(self.locate) != len(self.symbols):
            raise ValueError("symbols must be unique")
        if len(self.symbols) > 0xFFFF:
            raise ValueError("at most 65535 symbols fit the u16 stock locate")
        self._stock = {symbol: pad_alpha(symbol, 8, "stock") for symbol in self.symbols}
        self._mpid = {firm: pad_alpha(mpid, 4, "mpid") for firm, mpid in (mpids or {}).items()}
        self._round_lots = dict(round_lots or {})
        s = {code: _BY_CODE[code].struct for code in "SRHAFEXDUP"}
        self._pack_a = s["A"].pack
        self._pack_f = s["F"].pack
        self._pack_e = s["E"].pack
        self._pack_x = s["X"].pack
        self._pack_d = s["D"].pack
        self._pack_u = s["U"].pack
        self._pack_p = s["P"].pack
        self._pack_h = s["H"].pack
        self._pack_s = s["S"].pack
        self._pack_r = s["R"].pack

    # ---- day structure

    def system_event(self, code: str, timestamp: int) -> bytes:
        return self._pack_s(b"S", 0, 0, timestamp >> 32, timestamp & 0xFFFFFFFF, code.encode("ascii"))

    def stock_directory(self, symbol: str, timestamp: int) -> bytes:
        """'R' for one symbol: NASDAQ Global Select ('Q'), normal, common stock, not an ETP."""
        return self._pack_r(b"R", self.locate[symbol], 0, timestamp >> 32, timestamp & 0xFFFFFFFF,
                            self._stock[symbol], b"Q", b"N", self._round_lots.get(symbol, 100), b"N", b"C",
                            b"  ", b"P", b"N", b" ", b"1", b"N", 0, b"N")

    def mpid(self, firm: str) -> bytes:
        mpid = self._mpid.get(firm)
        if mpid is None:
            mpid = self._mpid[firm] = pad_alpha(firm.upper()[:4].ljust(4, "X"), 4, "mpid")
        return mpid

    # ---- book events

    def encode(self, event, locate: int, timestamp: int) -> bytes:
        """One market-data event as ITCH bytes; ``locate`` is the symbol the operation acted on."""
        hi = timestamp >> 32
        lo = timestamp & 0xFFFFFFFF
        kind = type(event)
        if kind is OrderExecuted:
            return self._pack_e(b"E", locate, 0, hi, lo, event[0], event[1], event[2])
        if kind is AddOrder:
            ref, side, shares, symbol, price, attribution = event
            if attribution is None:
                return self._pack_a(b"A", locate, 0, hi, lo, ref, side.encode(), shares, self._stock[symbol], price)
            return self._pack_f(b"F", locate, 0, hi, lo, ref, side.encode(), shares, self._stock[symbol], price,
                                self.mpid(attribution))
        if kind is OrderDelete:
            return self._pack_d(b"D", locate, 0, hi, lo, event[0])
        if kind is OrderCancel:
            return self._pack_x(b"X", locate, 0, hi, lo, event[0], event[1])
        if kind is OrderReplace:
            return self._pack_u(b"U", locate, 0, hi, lo, event[0], event[1], event[2], event[3])
        if kind is Trade:
            side, shares, symbol, price, match = event
            return self._pack_p(b"P", locate, 0, hi, lo, 0, side.encode(), shares, self._stock[symbol], price, match)
        if kind is TradingAction:
            symbol, state = event
            return self._pack_h(b"H", locate, 0, hi, lo, self._stock[symbol], state.encode(), b" ", b"    ")
        raise TypeError(f"not a market-data event: {event!r}")
