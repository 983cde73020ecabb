"""An example user strategy that takes liquidity: buy when the book leans to the bid, sell when it leans
to the ask.

The imbalance of a book is ``(bid shares - ask shares) / (bid shares + ask shares)`` over every level the
book shows (up to BOOK_DEPTH a side): +1 is all bids, -1 all asks. When it reaches ``threshold`` the
strategy buys ``size`` at the best ask with an immediate-or-cancel order (whatever is not filled at once
is cancelled by the venue); at ``-threshold`` it sells at the best bid; never on a book it cannot trust
(stale, crossed, halted) or while the trading gate is closed. Then it waits: at most one order
of a symbol on its way at a time, no new one within ``cooldown_ms`` of the last (timed by the book
updates' receive time, so the same code is right live and replayed), and never beyond ``max_position``
long or short even if the order fills in full. On stop it flattens: cancels what is left and closes
each position with an immediate-or-cancel order at the touch.

Run it live against the simulated exchange (every parameter has a default)::

    appliance up --sim --strategy examples/strategies/imbalance_taker.py:ImbalanceTaker

or with your own values: ``--strategy-params my.yaml`` holding e.g. ``{threshold: 0.5, size: 200}``.
It imports only ``appliance.strategy``, the public API.
"""
from __future__ import annotations

from dataclasses import dataclass

from appliance.strategy import TIF_IOC, Book, Order, Strategy, reject_reason_name


@dataclass(frozen=True)
class Parameters:
    threshold: float = 0.6            # |imbalance| that triggers an order, 0 < threshold <= 1
    size: int = 100                   # shares per order
    max_position: int = 500           # never beyond this many shares long or short
    cooldown_ms: int = 500            # per symbol, after each order

    def __post_init__(self):
        if not 0 < self.threshold <= 1:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.size < 1:
            raise ValueError(f"size must be at least 1, got {self.size}")
        if self.max_position < self.size:
            raise ValueError(f"max_position {self.max_position} is below size {self.size}")
        if self.cooldown_ms < 0:
            raise ValueError(f"cooldown_ms must not be negative, got {self.cooldown_ms}")


def imbalance(book: Book) -> float | None:
    """(bid shares - ask shares) / (bid shares + ask shares) over the book's levels; None with a side empty."""
    bid_shares = sum(shares for _, shares in book.bids)
    ask_shares = sum(shares for _, shares in book.asks)
    if not bid_shares or not ask_shares:
        return None
    return (bid_shares - ask_shares) / (bid_shares + ask_shares)


class ImbalanceTaker(Strategy):
    Parameters = Parameters

    def on_start(self) -> None:
        self.quiet_until_ns = {symbol: 0 for symbol in self.symbols}     # the cooldown, in book time

    def on_book(self, book: Book) -> None:
        p, symbol = self.params, book.symbol
        if book.stale or book.crossed or book.halted or not self.gate_open() or self.orders.count(symbol):
            return                                          # (with the gate closed risk would refuse it)
        if book.t_rx_ns < self.quiet_until_ns[symbol]:
            return
        lean = imbalance(book)
        if lean is None or abs(lean) < p.threshold:
            return
        position = self.positions[symbol]
        if lean > 0 and position + p.size <= p.max_position:
            self.buy(symbol, p.size, book.ask_price, tif=TIF_IOC)
        elif lean < 0 and position - p.size >= -p.max_position:
            self.sell(symbol, p.size, book.bid_price, tif=TIF_IOC)
        else:
            return                                                       # at the limit on that side
        self.quiet_until_ns[symbol] = book.t_rx_ns + p.cooldown_ms * 1_000_000

    def on_order_rejected(self, order: Order, source, reason: int) -> None:
        self.log.warning("%s %s refused: %s", order.symbol, order.side.name, reject_reason_name(source, reason))

    def on_stop(self) -> None:
        self.flatten()
