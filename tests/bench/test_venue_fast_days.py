"""The compiled recorded book (``replay/_venue_fast.c``) against the Python reference on days from
``bench itch``'s generator (100-symbol style days, books often crossed: many taker fills), plain and
perturbed; and ``bench backtest``'s setup on such a day: the same report files either way."""
from __future__ import annotations

import argparse

import pytest

from appliance.backtest import report
from appliance.backtest.cli import add_arguments, build_setup
from appliance.bench.backtest import _settings
from appliance.bench.feed_replay import directory_symbols
from appliance.bench.itch import generate_day_file
from appliance.replay import venue as venue_module
from backtest_days import reports_both_ways
from venue_diff import MODELS, differ, perturbed, raws

pytestmark = pytest.mark.skipif(not venue_module.AVAILABLE, reason="replay/_venue_fast.c not built")


def generated_day(tmp_path, messages=30_000, symbols=12):
    path = tmp_path / "generated.itch"
    generate_day_file(str(path), messages, seed=11, symbols=symbols)
    return raws(path), directory_symbols(path.read_bytes(), symbols)


@pytest.mark.parametrize("model", MODELS)
def test_generated_day(tmp_path, model):
    messages, symbols = generated_day(tmp_path)
    venue, events = differ(messages, symbols, model, seed=5)
    counters = venue.counters
    assert counters["passive_fills"] > 10 and counters["taker_fills"] > 20 and events > 500


def test_perturbed_generated_day(tmp_path):
    messages, symbols = generated_day(tmp_path, messages=20_000)
    venue, _ = differ(perturbed(messages, 9), symbols, "fifo", seed=9)
    assert venue.counters["duplicate_add"] > 0 and venue.counters["unsubscribed"] > 0


def test_generated_day_same_report_files(tmp_path):
    day = tmp_path / "day.itch"
    generate_day_file(str(day), 60_000, seed=3, symbols=20)
    traded = directory_symbols(day.read_bytes(), 20)[::4]
    files = _settings(tmp_path, traded)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    run_setup = build_setup(parser.parse_args([str(day), "--strategy", "appliance.strategy.market_maker:MarketMaker",
                                               "--instruments", files["instruments"], "--limits", files["limits"],
                                               "--params", files["params"], "--fees", "none"]))
    (compiled, record), (python, python_record) = reports_both_ways(run_setup)
    assert compiled == python and record.orders > 0
    left = report.write_report(record, tmp_path / "compiled")
    right = report.write_report(python_record, tmp_path / "python")
    for a, b in zip(left, right):
        assert a.read_bytes() == b.read_bytes()
