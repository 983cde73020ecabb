"""The compiled check set (``_risk_fast.c``): ``RiskEngine.check`` for the common case, in C.

``compiled_check(engine)`` is a callable with ``engine.check``'s arguments and results. It reads
the engine's own state on every call (the engine's, its Portfolio's, open orders' and sliding
windows' ``__slots__``, the client-id set, the identical-order dict, the market-state slot under
its seqlock), so it holds no copy to keep in step: a reload, a rebuild or a kill is seen by the
next call. It decides only where the reference would change nothing; where ``check`` has side
effects (MESSAGE_RATE's throttle count, a loss limit's kill, a new P&L peak, the market-hours
answer expiring, a torn market-state read) or a value leaves the common case (beyond 64 bits,
negative ids, keyword arguments), it calls ``engine.check`` itself, which decides. So the
reference (``checks.py``) is also the fallback, and the kill switch, the gate and every fail-closed
rule are the reference's own. ``tests/risk/test_risk_fast_diff.py`` checks both decide alike.

The agent's hop for one intent, ``compiled_check(engine).approve(intent_buffer, offset,
approved_buffer, out, now)``: the OrderIntent read from its ring slot, decided as above, and an
approval written into the claimed ApprovedOrder slot (the intent's fields byte for byte, then
``t_risk_out_ns``), all in C; the agent commits. It returns the reason, or -1 for a record that is
not an OrderIntent or a strategy's REDUCE (the agent's own path). The layouts come from the catalog.

Without the extension built, ``compiled_check`` returns ``engine.check``.
"""
from __future__ import annotations

from appliance.messages.catalog import APPROVED_ORDER, BOOK_FLAG_HALTED, MARKET_STATE, ORDER_INTENT
from appliance.messages.codes import MARKET_PRICE, TIF_DAY, TIF_IOC, Action, RiskReason
from appliance.wire.ouch import minimum_quantity_problem

from . import checks
from .rate import SlidingWindow
from .state import NO_ASK, OpenOrder, Portfolio

try:  # built by setup.py
    from appliance.risk import _risk_fast  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - exercised when the extension is not built
    _risk_fast = None

AVAILABLE = _risk_fast is not None

if _risk_fast is not None:
    _seqlock = MARKET_STATE.offset_of["seqlock"]
    _risk_fast.configure(
        (checks.RiskEngine, Portfolio, OpenOrder, SlidingWindow),
        {"NEW": checks.NEW, "REPLACE": checks.REPLACE, "CANCEL": checks.CANCEL, "CANCEL_ALL": checks.CANCEL_ALL,
         "SNAPSHOT": checks.SNAPSHOT, "BUY": checks.BUY, "SELL": checks.SELL, "SELL_SHORT": checks.SELL_SHORT,
         "TIF_DAY": TIF_DAY, "TIF_IOC": TIF_IOC, "MARKET_PRICE": MARKET_PRICE, "NO_ASK": NO_ASK,
         "TRADING": checks.TRADING, "HALTED": checks.HALTED, "REDUCING": checks.REDUCING,
         "BAD_BOOK": checks.BAD_BOOK, "NO_BOOK": checks.NO_BOOK, "BOOK_FLAG_HALTED": BOOK_FLAG_HALTED,
         "VISIBLE": checks.VISIBLE, "AGENCY": checks.AGENCY, "HIDDEN": checks.HIDDEN},
        {reason.name: int(reason) for reason in RiskReason},
        checks.DISPLAYS, checks.CAPACITIES,
        {f.name: (MARKET_STATE.offset_of[f.name] - _seqlock, f.size) for f in MARKET_STATE.fields},
        minimum_quantity_problem,
    )
    _risk_fast.configure_path(
        {f.name: (f.offset, f.size) for f in ORDER_INTENT.fields}, ORDER_INTENT.type_id, ORDER_INTENT.size,
        APPROVED_ORDER.type_id, APPROVED_ORDER.version, APPROVED_ORDER.size, APPROVED_ORDER.offset_of["t_risk_out_ns"],
        int(Action.REDUCE),
    )


def compiled_check(engine: checks.RiskEngine):
    """``engine.check``, compiled when the extension is built (``FastCheck``: ``decided`` and
    ``fallbacks`` count who decided each call); else ``engine.check`` itself."""
    if _risk_fast is None:
        return engine.check
    return _risk_fast.FastCheck(engine)
