"""The compiled recorded book (``replay/_venue_fast.c``) against the Python reference (``venue.py``,
``compiled=False``): the same recorded messages and the same orders of ours give the same events, queue
positions, levels, recorded orders and counters (``support/venue_diff.py``), on a day recorded from the
simulated exchange and that day perturbed (duplicate and unknown references, oversized executions and
cancels, zero shares, replaces onto live references, hidden prints, halts, re-mapped locates). Generated
days: ``tests/bench/test_venue_fast_days.py``."""
from __future__ import annotations

import pytest

from appliance.replay import venue as venue_module
from appliance.replay.venue import ReplayVenue
from backtest_days import PRICES, recorded_day
from itch_raw import add, directory
from venue_diff import MODELS, differ, perturbed, raws

pytestmark = pytest.mark.skipif(not venue_module.AVAILABLE, reason="replay/_venue_fast.c not built")


@pytest.mark.parametrize("model", MODELS)
def test_recorded_day(tmp_path, model):
    messages = raws(recorded_day(tmp_path / "recorded"))
    venue, events = differ(messages, tuple(PRICES), model, seed=7)
    assert venue.counters["passive_fills"] > 20 and events > 500


@pytest.mark.parametrize("seed", (1, 2, 3))
def test_perturbed_recorded_day(tmp_path, seed):
    messages = perturbed(raws(recorded_day(tmp_path / "recorded")), seed)
    venue, _ = differ(messages, tuple(PRICES), MODELS[seed % len(MODELS)], seed=seed)
    counters = venue.counters
    assert counters["duplicate_add"] > 0 and counters["unknown_order"] > 0


def test_not_a_raw_tuple_is_a_clear_error():
    venue = ReplayVenue(("AAPL",), "risk-averse")
    with pytest.raises(TypeError):
        venue.on_itch([b"A", 1, 0, 5])
    with pytest.raises(TypeError):
        venue.on_itch((b"A", 1))


def test_the_reference_is_chosen_before_the_first_message_only():
    venue = ReplayVenue(("AAPL",), "risk-averse")
    venue.use_reference()
    assert not venue.compiled
    venue.on_itch(directory("AAPL", 5))
    assert venue.counters["messages"] == 1 and venue.books[0].locate == 5
    started = ReplayVenue(("AAPL",), "risk-averse")
    started.on_itch(directory("AAPL", 5))
    with pytest.raises(RuntimeError):
        started.use_reference()
    assert started.compiled


def test_best_price_compiled_and_reference():
    """``best_price``: the highest bid, the lowest ask, None for an empty side; ``Core.best`` and the
    reference's ``max``/``min`` agree (the day-long comparison is in ``venue_diff.state``)."""
    venues = (ReplayVenue(("AAPL", "MSFT"), "risk-averse"), ReplayVenue(("AAPL", "MSFT"), "risk-averse", compiled=False))
    for venue in venues:
        venue.on_itch(directory("AAPL", 5))
        assert venue.best_price(0, True) is None and venue.best_price(0, False) is None
        for ref, (side, price) in enumerate((("B", 1_000_100), ("B", 1_000_300), ("B", 999_900), ("S", 1_000_700),
                                             ("S", 1_000_500), ("S", 1_002_000)), start=1):
            venue.on_itch(add(5, ref, side, 100, "AAPL", price))
        assert (venue.best_price(0, True), venue.best_price(0, False)) == (1_000_300, 1_000_500)
        assert venue.best_price(1, True) is None
    assert venues[0].compiled and not venues[1].compiled
    with pytest.raises(IndexError):
        venues[0].best_price(2, True)
