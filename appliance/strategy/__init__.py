"""The strategy process: a user's ``Strategy`` subclass driven by book updates and execution reports.

Write a strategy against ``appliance.strategy`` (``Strategy``, ``Book``, ``Order``, ``OrderState``,
``format_price`` ...), point the layout's strategy process at it (``params.strategy``:
``module.path:ClassName`` or ``path/to/file.py:ClassName``), and give it parameters inline or in a
YAML file. ``appliance.strategy.market_maker:MarketMaker`` is the reference market maker.
See ``api.py`` for the API, ``host.py`` for what happens to each record (``order_view.py`` for
the orders and positions the reports rebuild), ``agent.py`` for the process, ``config.py`` for the
``params`` format.
"""
from appliance.config.instruments import Instrument
from appliance.messages.codes import TIF_DAY, TIF_IOC, Capacity, Display, RejectSource, Side

from .api import (
    MARKET, MARKET_PRICE, PRICE_SCALE, BackPressure, Book, Level, OpenOrders, Order, OrderState, Positions, Strategy,
    StrategyStopping, Trade, format_price, price_from_decimal, reject_reason_name,
)
from .fees import FeeSchedule
from .fills import LIQUIDITY_FLAGS, Fill

__all__ = ["Strategy", "Book", "Level", "Trade", "Order", "OrderState", "OpenOrders", "Positions", "Fill",
           "LIQUIDITY_FLAGS", "FeeSchedule", "Instrument", "BackPressure", "StrategyStopping", "format_price",
           "price_from_decimal", "reject_reason_name", "PRICE_SCALE", "MARKET_PRICE", "MARKET", "TIF_DAY", "TIF_IOC",
           "Side", "Display", "Capacity", "RejectSource"]
