"""report.json and report.html: deterministic, self-contained, the plots embedded as PNG."""
from __future__ import annotations

import base64
import dataclasses
import json
import re

import pytest

from appliance.backtest.record import BacktestFill, BacktestRecord, EquityPoint
from appliance.backtest.report import WALL_TIME_FIELDS, results, write_report

S = 1_000_000_000
START = 34_200 * S


def day(seconds: float = 1.25) -> BacktestRecord:
    fills, equity, mid = [], [], 1_000_000.0
    for minute in range(1, 31):
        mid += (-1) ** minute * 100 * (minute % 3)
        equity.append(EquityPoint(START + minute * 60 * S, {"AAPL": mid, "MSFT": 2 * mid}))
        side = "B" if minute % 2 else "S"
        fills.append(BacktestFill(START + minute * 60 * S - 7 * S, "AAPL" if minute % 3 else "MSFT", side, 100,
                                  int(mid) - 100 if side == "B" else int(mid) + 100, "AR"[minute % 2],
                                  (-20, 30)[minute % 2] * 100, minute, {1: mid, 10: mid + 50, 60: None}))
    return BacktestRecord(day_file="d.itch", symbols=("AAPL", "MSFT"), strategy="examples.mm:MarketMaker <b>",
                          seed=1, start_ns=START, end_ns=START + 30 * 60 * S, messages=1_000_000, seconds=seconds,
                          intents=80, orders=40, orders_by_symbol={"AAPL": 27, "MSFT": 13},
                          refusals={"MAX_LONG": 1}, refusals_by_symbol={"AAPL": {"MAX_LONG": 1}}, fills=fills,
                          equity=equity, warnings=["file ends mid-message at offset 12345"])


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The same record written twice, and once with another wall time (each report renders four PNGs:
    written once for every test here)."""
    base = tmp_path_factory.mktemp("reports")
    return {name: write_report(day(seconds), base / name) for name, seconds in
            (("a", 1.25), ("b", 1.25), ("slower", 2.5))}


def test_equal_records_give_byte_identical_files(written):
    assert [p.name for p in written["a"]] == ["report.json", "report.html"]
    for left, right in zip(written["a"], written["b"]):
        assert left.read_bytes() == right.read_bytes()


def test_only_the_wall_time_differs_between_two_runs(written):
    (a_json, a_html), (b_json, b_html) = written["a"], written["slower"]
    assert a_html.read_bytes() == b_html.read_bytes()
    a, b = json.loads(a_json.read_text()), json.loads(b_json.read_text())
    assert (a["results"]["msgs_per_s"], b["results"]["msgs_per_s"]) == (800_000, 400_000)
    for doc in (a, b):
        for key in WALL_TIME_FIELDS:
            del doc["results"][key]
    assert a == b


def test_the_json_holds_the_results_and_the_run(written):
    doc = json.loads(written["a"][0].read_text())
    assert doc["results"] == json.loads(json.dumps(results(day())))
    assert doc["run"]["warnings"] == ["file ends mid-message at offset 12345"]
    assert doc["total"]["fills"] == 30 and "Sharpe" in doc["units"]["sharpe"]


def test_the_page_is_self_contained_with_four_png_plots(written):
    page = written["a"][1].read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//|file:)""", page)
    assert "url(" not in page and "<script" not in page and "<link" not in page
    sources = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)">', page)
    assert [alt for alt, _ in sources] == ["Equity curve", "Drawdown", "Inventory per symbol", "Fill markouts"]
    for _, data in sources:
        png = base64.b64decode(data)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and b"matplotlib" not in png
    assert "examples.mm:MarketMaker &lt;b&gt;" in page and "<b>" not in page.split("<h2>Definitions")[0]
    assert "Sharpe = mean(r) / stdev(r) x sqrt(252 x 390)" in page
    assert "file ends mid-message at offset 12345" in page


def test_an_empty_day_still_writes_a_page(tmp_path):
    record = dataclasses.replace(day(), fills=[], equity=[], refusals={}, refusals_by_symbol={}, orders=0,
                                 orders_by_symbol={})
    json_path, html_path = write_report(record, tmp_path / "new" / "dir")
    assert json.loads(json_path.read_text())["results"]["fills"] == 0
    assert html_path.read_text().count("data:image/png;base64,") == 4


def test_the_time_axis_says_seconds_on_a_short_day():
    from appliance.backtest.plots import clock
    assert (clock(34_200, False), clock(34_205, True), clock(86_399, True)) == ("09:30", "09:30:05", "23:59:59")
