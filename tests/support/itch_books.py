"""A plain ITCH 5.0 book builder: the tests' independent reader of the exchange's feed.

Deliberately simple (dicts, no speed tricks) and written from the ITCH spec, not from the
exchange's code, so that "the feed rebuilds the exchange's book" means something. It also
checks the day's structure: sequence of System Events, a Stock Directory before any order of
a locate, and order references unique and known.
"""
from __future__ import annotations

from collections import defaultdict

from appliance.wire import itch


class ItchBooks:
    def __init__(self) -> None:
        self.symbol_of_locate: dict[int, str] = {}
        self.orders: dict[int, list] = {}              # ref -> [locate, side, price, shares]
        self.halted: dict[str, bool] = {}
        self.system_events: list[str] = []
        self.trades: list[tuple] = []                  # (symbol, shares, price, match) from E, C and P
        self.counts: dict[str, int] = defaultdict(int)
        self.errors: list[str] = []
        self.last_timestamp = 0

    def apply(self, message: bytes) -> None:
        fields = itch.decode(message)
        kind = fields["type"]
        self.counts[kind] += 1
        locate = fields["stock_locate"]
        if fields["timestamp"] < self.last_timestamp:
            self.errors.append(f"timestamp went backwards at {kind}")
        self.last_timestamp = fields["timestamp"]
        if kind == "S":
            self.system_events.append(fields["event_code"])
        elif kind == "R":
            self.symbol_of_locate[locate] = fields["stock"]
            self.halted.setdefault(fields["stock"], False)
        elif kind == "H":
            self.halted[fields["stock"]] = fields["trading_state"] == "H"
        elif kind in "AF":
            ref = fields["order_reference_number"]
            if locate not in self.symbol_of_locate or self.symbol_of_locate[locate] != fields["stock"]:
                self.errors.append(f"add {ref}: locate {locate} is not {fields['stock']!r}")
            if ref in self.orders:
                self.errors.append(f"add {ref}: reference already live")
            self.orders[ref] = [locate, fields["buy_sell_indicator"], fields["price"], fields["shares"]]
        elif kind in "EC":
            order = self._order(fields["order_reference_number"], locate, kind)
            if order is not None:
                shares = fields["executed_shares"]
                if shares > order[3]:
                    self.errors.append(f"{kind} {fields['order_reference_number']}: executes {shares} of {order[3]}")
                order[3] -= shares
                price = order[2] if kind == "E" else fields["execution_price"]
                self.trades.append((self.symbol_of_locate[locate], shares, price, fields["match_number"]))
                if order[3] <= 0:
                    del self.orders[fields["order_reference_number"]]
        elif kind == "X":
            order = self._order(fields["order_reference_number"], locate, kind)
            if order is not None:
                order[3] -= fields["canceled_shares"]
                if order[3] <= 0:
                    self.errors.append(f"X {fields['order_reference_number']} canceled the whole order")
                    del self.orders[fields["order_reference_number"]]
        elif kind == "D":
            if self._order(fields["order_reference_number"], locate, kind) is not None:
                del self.orders[fields["order_reference_number"]]
        elif kind == "U":
            old = fields["original_order_reference_number"]
            order = self._order(old, locate, kind)
            if order is not None:
                del self.orders[old]
                self.orders[fields["new_order_reference_number"]] = [locate, order[1], fields["price"], fields["shares"]]
        elif kind == "P":
            self.trades.append((fields["stock"], fields["shares"], fields["price"], fields["match_number"]))

    def _order(self, ref: int, locate: int, kind: str):
        order = self.orders.get(ref)
        if order is None:
            self.errors.append(f"{kind} names unknown order {ref}")
        elif order[0] != locate:
            self.errors.append(f"{kind} {ref}: locate {locate}, the order was added under {order[0]}")
        return order

    # ---- views comparable with the exchange's ``Book``

    def resting(self, symbol: str) -> dict[int, tuple[str, int, int]]:
        """ref -> (side, price, shares) of every displayed order of ``symbol``."""
        return {ref: (o[1], o[2], o[3]) for ref, o in self.orders.items() if self.symbol_of_locate[o[0]] == symbol}

    def levels(self, symbol: str, side: str) -> list[tuple[int, int]]:
        """(price, shares) best first, like ``Book.bids(displayed_only=True)``."""
        agg: dict[int, int] = defaultdict(int)
        for o in self.orders.values():
            if o[1] == side and self.symbol_of_locate[o[0]] == symbol:
                agg[o[2]] += o[3]
        return sorted(agg.items(), reverse=(side == "B"))
