"""``appliance backtest``: its options, the --json object, the report files, and clear errors."""
from __future__ import annotations

import json

import pytest

from appliance.cli import main
from backtest_days import two_sided_day

INSTRUMENTS = "version: 1\ninstruments:\n  - {symbol: AAPL, tick: 0.01, round_lot: 100}\n" \
              "  - {symbol: MSFT, tick: 0.01, round_lot: 100}\n"
LIMITS = """version: 1
global: {capital: 10000000, max_gross_notional: 5000000, max_net_notional: 5000000, max_leverage: 1.0,
         max_daily_loss: 50000, max_drawdown: 75000, max_messages_per_second: 1000, max_open_orders: 100,
         max_identical_orders: 10}
sectors: {ALL: {max_gross_notional: 5000000}}
symbol_defaults: {sector: ALL, max_shares: 1000, max_notional: 1000000, collar_pct: 5, max_long: 2000,
                  max_short: 2000}
symbols: {AAPL: {}, MSFT: {}}
"""
FEES = "default: {A: -0.0020, R: 0.0030, other: 0.0030}\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "instruments.yaml").write_text(INSTRUMENTS)
    (tmp_path / "limits.yaml").write_text(LIMITS)
    (tmp_path / "fees.yaml").write_text(FEES)
    (tmp_path / "mm.yaml").write_text("spread_ticks: 1\nsize: 100\n")
    day = two_sided_day(tmp_path / "day.bin", minutes=2)
    return tmp_path, day


def args(tmp_path, day, *more):
    return ["backtest", str(day), "--instruments", str(tmp_path / "instruments.yaml"), "--limits",
            str(tmp_path / "limits.yaml"), "--fees", str(tmp_path / "fees.yaml"), "--params", str(tmp_path / "mm.yaml"),
            *more]


def test_json_prints_the_results_object_and_no_progress_when_not_a_terminal(files, capsys):
    tmp_path, day = files
    assert main(args(tmp_path, day, "--json", "--symbols", "AAPL", "--seed", "3", "--queue-model", "fifo",
                      "--latency", "feed=1000,entry=2000,ack=3000", "--report", str(tmp_path / "rep"))) == 0
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert list(document) == ["results"]
    results = document["results"]
    for key in ("messages", "seconds", "msgs_per_s", "orders", "fills", "pnl_gross", "pnl_net", "fees", "sharpe",
                "max_drawdown", "markouts", "refusals", "symbols"):
        assert key in results, key
    assert results["messages"] == 1 + 2 + 4 + 2 * 120 + 1 and list(results["symbols"]) == ["AAPL"]
    assert results["orders"] > 0
    assert "\r" not in err and err == ""
    assert (tmp_path / "rep" / "report.json").exists() and (tmp_path / "rep" / "report.html").exists()


def test_the_summary_without_json(files, capsys):
    tmp_path, day = files
    assert main(args(tmp_path, day, "--from", "09:30:30", "--to", "09:31")) == 0
    out, _ = capsys.readouterr()
    assert "ITCH messages in" in out and "strategy appliance.strategy.market_maker:MarketMaker on AAPL, MSFT" in out


@pytest.mark.parametrize("extra, message", [
    (["--symbols", "IBM"], "--symbols: IBM not in"),
    (["--symbols", "AAPL,AAPL"], "names a symbol twice"),
    (["--queue-model", "lifo"], "unknown queue model 'lifo'"),
    (["--latency", "feed=fast"], "latency feed: 'fast' is not an integer"),
    (["--from", "10:00", "--to", "09:30"], "--to must be after --from"),
    (["--strategy", "nowhere.module:Nothing"], "cannot import 'nowhere.module'"),
    (["--fees", "/nonexistent/fees.yaml"], "no such file"),
])
def test_bad_arguments_are_usage_errors(files, capsys, extra, message):
    tmp_path, day = files
    assert main(args(tmp_path, day, *extra)) == 2
    assert message in capsys.readouterr().err


def test_bad_configuration_files_name_file_line_and_key(files, capsys):
    tmp_path, day = files
    (tmp_path / "limits.yaml").write_text(LIMITS.replace("max_shares: 1000", "max_shares: -5"))
    assert main(args(tmp_path, day)) == 2
    err = capsys.readouterr().err
    assert "limits.yaml:6" in err and "max_shares" in err
    (tmp_path / "limits.yaml").write_text(LIMITS)
    (tmp_path / "mm.yaml").write_text("spread_tics: 1\n")
    assert main(args(tmp_path, day)) == 2
    assert "spread_tics" in capsys.readouterr().err


def test_bad_or_missing_day_files(files, capsys):
    tmp_path, day = files
    assert main(args(tmp_path, tmp_path / "missing.bin")) == 2
    assert "missing.bin: no such file" in capsys.readouterr().err
    garbage = tmp_path / "garbage.bin"
    garbage.write_bytes(b"\x00\x05hello" * 10)
    assert main(args(tmp_path, garbage)) == 1
    assert "bad ITCH data at byte offset 0: truncated message 'h': block length 5, expected 21" in capsys.readouterr().err
    cut = tmp_path / "cut.bin"
    cut.write_bytes(day.read_bytes()[:-3])
    assert main(args(tmp_path, cut, "--json")) == 0
    assert "warning: file ends mid-message at offset" in capsys.readouterr().err


def test_the_progress_line_rewrites_one_line():
    import io

    from appliance.backtest.cli import ProgressLine
    stream = io.StringIO()
    line = ProgressLine(stream)
    line({"messages": 1_500_000, "share": 0.25, "msgs_per_s": 2_000_000.0, "eta_s": 2.25, "fills": 12,
          "realized_pnl": -12_345})
    line({"messages": 3_000_000, "share": 0.5, "msgs_per_s": 2_000_000.0, "eta_s": None, "fills": 20,
          "realized_pnl": 0})
    line.done()
    text = stream.getvalue()
    assert text.count("\r") == 3 and "\n" not in text
    assert "1,500,000 msgs   25.0%  2.00 M msg/s  ETA 2 s  fills 12  realized P&L $-1.23" in text
    assert "ETA ?" in text
