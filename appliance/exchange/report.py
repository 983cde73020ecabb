"""The end-of-day report: every order, fill and position per firm, built from what each firm was told.

``DayLedger`` reads the order-entry events the venue sends to a firm (the same events that
become its OUCH stream), so the report is what an honest OMS on the other end should agree
with; the integration tests reconcile the appliance against it. The engine's own tallies
(``MatchingEngine.firm_report``) are put next to it, and ``check`` says where they differ,
which would be a bug in the venue.

The background participants get no ledger: only the engine's tallies and positions are
reported for them (their orders number in the millions on a long run).
"""
from __future__ import annotations

from dataclasses import asdict

from .events import Accepted, CancelReject, Canceled, Executed, Rejected, Replaced


class OrderRecord:
    __slots__ = ("token", "symbol", "side", "price", "shares", "tif", "display", "ref", "executed", "canceled",
                 "replaced", "replaced_by", "replaces")

    def __init__(self, token, symbol, side, price, shares, tif, display, ref, replaces=None) -> None:
        self.token, self.symbol, self.side, self.price, self.shares = token, symbol, side, price, shares
        self.tif, self.display, self.ref, self.replaces = tif, display, ref, replaces
        self.executed = 0
        self.canceled = 0
        self.replaced = 0               # leaves handed to the replacement order
        self.replaced_by = None

    @property
    def leaves(self) -> int:
        return self.shares - self.executed - self.canceled - self.replaced

    def as_dict(self) -> dict:
        return {"token": self.token, "symbol": self.symbol, "side": self.side, "price": self.price,
                "shares": self.shares, "time_in_force": self.tif, "display": self.display,
                "order_reference_number": self.ref, "executed": self.executed, "canceled": self.canceled,
                "replaced": self.replaced, "leaves": self.leaves, "replaces": self.replaces, "replaced_by": self.replaced_by}


class FirmLedger:
    def __init__(self, firm: str) -> None:
        self.firm = firm
        self.orders: dict[str, OrderRecord] = {}
        self.fills: list[dict] = []
        self.rejects: list[dict] = []
        self.cancel_rejects = 0
        self.canceled_by_reason: dict[str, int] = {}     # OUCH cancel reason -> shares
        self.positions: dict[str, int] = {}
        self.bought = 0
        self.sold = 0

    def apply(self, event, timestamp: int) -> None:
        kind = type(event)
        if kind is Executed:
            _firm, token, shares, price, liquidity, match = event
            order = self.orders[token]
            order.executed += shares
            signed = shares if order.side == "B" else -shares
            self.positions[order.symbol] = self.positions.get(order.symbol, 0) + signed
            if signed > 0:
                self.bought += shares
            else:
                self.sold += shares
            self.fills.append({"token": token, "symbol": order.symbol, "side": order.side, "shares": shares,
                               "price": price, "liquidity": liquidity, "match_number": match,
                               "timestamp": timestamp})
        elif kind is Accepted:
            _firm, token, side, shares, symbol, price, tif, display, ref, state = event
            self.orders[token] = OrderRecord(token, symbol, "B" if side == "B" else "S", price, shares, tif, display,
                                             ref)
        elif kind is Canceled:
            _firm, token, shares, reason = event
            self.orders[token].canceled += shares
            self.canceled_by_reason[reason] = self.canceled_by_reason.get(reason, 0) + shares
        elif kind is Replaced:
            _firm, token, previous, side, shares, symbol, price, tif, display, ref, state = event
            old = self.orders[previous]
            old.replaced_by = token
            old.replaced = old.leaves
            self.orders[token] = OrderRecord(token, symbol, "B" if side == "B" else "S", price, shares, tif, display,
                                             ref, replaces=previous)
        elif kind is Rejected:
            self.rejects.append({"token": event[1], "reason": event[2], "timestamp": timestamp})
        elif kind is CancelReject:
            self.cancel_rejects += 1

    def as_dict(self, include_orders: bool = True) -> dict:
        body = {"firm": self.firm, "orders_accepted": len(self.orders), "rejects": len(self.rejects),
                "cancel_rejects": self.cancel_rejects, "fills": len(self.fills), "bought": self.bought,
                "sold": self.sold, "positions": dict(sorted(self.positions.items())),
                "canceled_shares_by_reason": dict(sorted(self.canceled_by_reason.items())),
                "open_orders": sum(1 for o in self.orders.values() if o.leaves)}
        if include_orders:
            body["order_list"] = [o.as_dict() for o in self.orders.values()]
            body["fill_list"] = list(self.fills)
            body["reject_list"] = list(self.rejects)
        return body


def build_report(session: str, ledgers: dict[str, FirmLedger], engine, *, detailed: set[str],
                 extra: dict | None = None) -> dict:
    """The JSON-ready report: per firm the ledger (orders and fills for ``detailed`` firms) and the
    engine's tallies, plus the final book of every symbol."""
    firms = {}
    for name in sorted(set(ledgers) | set(engine.firms)):
        entry = {"engine": asdict(engine.firm_report(name))}
        ledger = ledgers.get(name)
        if ledger is not None:
            entry["ledger"] = ledger.as_dict(include_orders=name in detailed)
        firms[name] = entry
    books = {symbol: {"bids": book.bids(), "asks": book.asks(), "halted": book.halted}
             for symbol, book in engine.books.items()}
    report = {"session": session, "firms": firms, "books": books}
    if extra:
        report.update(extra)
    return report
