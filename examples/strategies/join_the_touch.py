"""An example user strategy that lives outside the appliance package: join the touch with one lot.

It rests one buy at the best bid and one sell at the best ask of each symbol while the spread is
at least ``min_spread_ticks`` wide and the book can be trusted, follows the touch when it moves,
and stops adding to a side once its position reaches ``max_position``.

Run it by pointing the strategy process at this file in the layout (a relative path is resolved
against the layout file's directory, then the working directory)::

    - name: strategy
      agent: appliance.strategy.agent:StrategyAgent
      params:
        strategy: examples/strategies/join_the_touch.py:JoinTheTouch
        strategy_id: 42
        parameters: {lot: 100, min_spread_ticks: 2, max_position: 300}

The ``Parameters`` dataclass below is what the loader validates those parameters against: an
unknown key, a missing ``lot``, or ``min_spread_ticks: two`` stops the process at start with the
key path and the reason. The tick is not a parameter: each symbol's comes from its instrument
(``self.instrument(symbol).tick``, the layout's instruments file), and a ``lot`` that is not a
whole number of the instrument's round lots is refused at load (``validate_instruments``). The
strategy imports only ``appliance.strategy``, its public API.
"""
from __future__ import annotations

from dataclasses import dataclass

from appliance.strategy import Book, Fill, Order, Side, Strategy, format_price


@dataclass(frozen=True)
class Parameters:
    lot: int                          # required: shares per order
    min_spread_ticks: int = 2         # do not join a market tighter than this (ticks of the instrument)
    max_position: int = 300           # no more buying above this (or selling below its negative)

    def __post_init__(self):
        if self.lot < 1:
            raise ValueError(f"lot must be at least 1, got {self.lot}")
        if self.max_position < self.lot:
            raise ValueError(f"max_position {self.max_position} is below one lot ({self.lot})")


class JoinTheTouch(Strategy):
    Parameters = Parameters

    @classmethod
    def validate_instruments(cls, parameters: Parameters, instruments: dict) -> None:
        for symbol, instrument in instruments.items():
            if parameters.lot % instrument.round_lot:
                raise ValueError(f"lot {parameters.lot} is not a whole number of {symbol}'s round lot "
                                 f"({instrument.round_lot})")

    def on_start(self) -> None:
        self.resting: dict[tuple[str, Side], int] = {}        # (symbol, side) -> client order id
        self.fills = 0
        self.min_spread = {symbol: self.instrument(symbol).ticks(self.params.min_spread_ticks)
                           for symbol in self.symbols}       # price units, from each instrument's tick

    def on_book(self, book: Book) -> None:
        p = self.params
        tradable = (not (book.stale or book.crossed or book.halted) and book.bid_price and book.ask_price
                    and book.ask_price - book.bid_price >= self.min_spread[book.symbol])
        position = self.positions[book.symbol]
        self._side(book.symbol, Side.BUY, book.bid_price if tradable and position < p.max_position else 0)
        self._side(book.symbol, Side.SELL, book.ask_price if tradable and position > -p.max_position else 0)

    def _side(self, symbol: str, side: Side, price: int) -> None:
        """Keep one lot resting at ``price`` on this side (0: none)."""
        key = (symbol, side)
        order = self.orders.get(self.resting.get(key, 0))
        if order is None:
            self.resting.pop(key, None)
            if price:
                send = self.buy if side == Side.BUY else self.sell
                self.resting[key] = send(symbol, self.params.lot, price)
        elif not price:
            self.cancel(order.client_order_id)
        elif order.price != price:
            new_id = self.replace(order.client_order_id, price=price)
            if new_id is not None:
                self.resting[key] = new_id

    def on_fill(self, order: Order, fill: Fill) -> None:
        self.fills += 1
        self.log.info("%s %s %d @ %s (%s, fee %s), position %d", order.symbol, order.side.name, fill.shares,
                      format_price(fill.price), fill.liquidity_name, format_price(fill.fee),
                      self.positions[order.symbol])

    def on_order_rejected(self, order: Order, source, reason: int) -> None:
        if order.replaces and order.replaces in self.orders:      # the replace failed: the original stands
            self.resting[(order.symbol, order.side)] = order.replaces

    def on_stop(self) -> None:
        self.cancel_all()
