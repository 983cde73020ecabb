"""Running a chosen strategy: ``appliance up --strategy SPEC [--strategy-params FILE]`` and
``appliance strategy check``, each bad SPEC or FILE refused before anything starts, and every example
strategy live against the simulated exchange through ``appliance up --strategy``."""
from __future__ import annotations

import os

import pytest

from appliance.cli import main
from appliance.exchange.records import read_ouch_log
from appliance.runtime.layout import load_layout
from appliance.runtime.segment import segment_path
from appliance.sim.sandbox import Sandbox
from appliance.sim.up import write_strategy_layout
from appliance.strategy.selection import select_strategy
from conftest import ROOT, wait_until

JOIN = "examples/strategies/join_the_touch.py:JoinTheTouch"
TAKER = "examples/strategies/imbalance_taker.py:ImbalanceTaker"
MARKET_MAKER = "appliance.strategy.market_maker:MarketMaker"


@pytest.fixture
def layout_path(tmp_path, unique_name):
    path = tmp_path / "shm_layout.yaml"
    path.write_text((ROOT / "shm_layout.yaml").read_text().replace("name: appliance", f"name: {unique_name}"))
    return path


def test_the_chosen_strategy_replaces_the_layouts_and_its_parameters_keeping_the_process_settings(
        layout_path, tmp_path, monkeypatch):
    (tmp_path / "join.yaml").write_text("lot: 200\n")
    monkeypatch.chdir(ROOT)                        # a relative SPEC is the caller's: the working directory's
    layout = load_layout(layout_path)
    params, loaded = select_strategy(layout, JOIN, str(tmp_path / "join.yaml"))
    assert params == {"strategy": f"{ROOT}/{JOIN}", "parameters_file": str(tmp_path / "join.yaml"),
                      "strategy_id": 1, "timer_interval_ms": 100,      # the market maker's file is gone,
                      "fees_file": "config/fees.yaml"}                # the venue's fees stay
    assert loaded.strategy_class.__name__ == "JoinTheTouch" and loaded.parameters.lot == 200
    _params, loaded = select_strategy(layout, TAKER)                  # no FILE: the Parameters defaults
    assert loaded.parameters == loaded.strategy_class.Parameters()
    written = write_strategy_layout(str(layout_path), TAKER, None)
    try:
        assert written.parent == layout_path.parent                   # its relative paths still hold
        again = load_layout(written)
        assert again.hash == layout.hash                              # every tool attaches with the original
        assert again.processes["strategy"].params["strategy"] == f"{ROOT}/{TAKER}"
        assert again.processes["oms"].params == layout.processes["oms"].params
    finally:
        written.unlink()


BAD = [
    (["--strategy", "examples/strategies/missing.py:X"], "--strategy: no such file: examples/strategies/missing.py"),
    (["--strategy", "examples/strategies/join_the_touch.py:Nope"], "has no 'Nope' (Strategy subclasses there: "
                                                                   "JoinTheTouch)"),
    (["--strategy", "appliance.strategy.api:Book"], "--strategy: Book in appliance.strategy.api is not a subclass"),
    (["--strategy", "no_such_module:X"], "--strategy: cannot import 'no_such_module'"),
    (["--strategy", "JoinTheTouch"], "--strategy: 'JoinTheTouch' is not 'module.path:ClassName'"),
    (["--strategy", JOIN], "--strategy-params: lot: missing required key (no parameters file given"),
    (["--strategy", JOIN, "--strategy-params", "nowhere.yaml"], "--strategy-params: no such file: 'nowhere.yaml'"),
    (["--strategy", JOIN, "--strategy-params", "{bad}"], "bad.yaml:1: lot: expected an integer, got a string"),
    (["--strategy", TAKER, "--strategy-params", "{bad}"], "bad.yaml:1: lot: unknown key (allowed: cooldown_ms, "),
    (["--strategy", TAKER, "--strategy-params", "{taker}"], "taker.yaml:1: <top>: threshold must be in (0, 1], got 2.0"),
    (["--strategy-params", "{bad}"], "--strategy-params needs --strategy"),
]


@pytest.mark.parametrize("sim", [False, True], ids=["up", "up-sim"])
@pytest.mark.parametrize("arguments, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_bad_strategy_or_parameters_file_stops_up_before_anything_starts(layout_path, tmp_path, monkeypatch,
                                                                           capsys, arguments, message, sim):
    (tmp_path / "bad.yaml").write_text("lot: two\n")
    (tmp_path / "taker.yaml").write_text("threshold: 2\n")
    monkeypatch.chdir(ROOT)
    arguments = [a.format(bad=tmp_path / "bad.yaml", taker=tmp_path / "taker.yaml") for a in arguments]
    assert main(["up", "--layout", str(layout_path), *(["--sim"] if sim else []), *arguments]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml", "shm_layout.yaml", "taker.yaml"]  # no run/
    for spec in load_layout(layout_path).segments.values():
        assert not os.path.lexists(segment_path(spec))


def test_strategy_check_loads_and_validates_without_trading(layout_path, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert main(["strategy", "check", TAKER, "--layout", str(layout_path)]) == 0
    assert capsys.readouterr().out.startswith(f"ok: ImbalanceTaker from {ROOT}/examples/strategies/imbalance_taker.py,"
                                              f" parameters inline: Parameters(threshold=0.6")
    assert main(["strategy", "check", MARKET_MAKER, "--params", "config/strategy.yaml",
                 "--layout", str(layout_path)]) == 0
    assert "MarketMaker from appliance.strategy.market_maker" in capsys.readouterr().out
    assert main(["strategy", "check", JOIN, "--layout", str(layout_path)]) == 2
    assert capsys.readouterr().err == ("appliance strategy check: --params: lot: missing required key (no parameters "
                                       "file given: only the strategy's Parameters defaults)\n")
    assert main(["strategy", "check", JOIN, "--layout", str(tmp_path / "none.yaml")]) == 2
    assert "none.yaml" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shm_layout.yaml"]


def test_strategy_check_holds_the_parameters_against_the_layouts_instruments(layout_path, tmp_path, monkeypatch,
                                                                              capsys):
    """`strategy check` said ok to a lot the strategy process refuses (not whole round lots): it loaded the
    strategy without the layout's instruments, so validate_instruments never ran."""
    monkeypatch.chdir(ROOT)
    (tmp_path / "odd.yaml").write_text("lot: 150\n")
    assert main(["strategy", "check", JOIN, "--params", str(tmp_path / "odd.yaml"), "--layout", str(layout_path)]) == 2
    assert f"{tmp_path / 'odd.yaml'}: <top>: lot 150 is not a whole number of AAPL's round lot (100)" in \
        capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Live: each example through `appliance up --strategy` against the simulated exchange
# ---------------------------------------------------------------------------------------------

FIRM = "ALGO1"
LIVE = {
    "market_maker": (MARKET_MAKER, None),
    "join_the_touch": (JOIN, "lot: 100\nmin_spread_ticks: 1\n"),
    "imbalance_taker": (TAKER, "threshold: 0.2\ncooldown_ms: 100\n"),
}


@pytest.mark.e2e
@pytest.mark.parametrize("example", LIVE)
def test_each_example_trades_live_through_up_with_strategy(tmp_path, example):
    spec, parameters = LIVE[example]
    if parameters is None:
        params_file = str(ROOT / "config" / "strategy.yaml")
    else:
        params_file = str(tmp_path / "params.yaml")
        (tmp_path / "params.yaml").write_text(parameters)
    sb = Sandbox(tmp_path / "sb", background_rate=3000, seed=31,
                 up_args=("--strategy", spec, "--strategy-params", params_file))     # spec relative to ROOT, the cwd
    try:
        sb.start(timeout_s=60)
        wait_until(lambda: sb.counters().get("oms.orders_sent", 0) >= 1
                   and sb.counters().get("strategy.exec_reports", 0) >= 1, 30, interval=0.1,
                   message=f"{example}'s orders at the exchange and its reports back ({sb.counters()})")
        assert sb.counters()["strategy.errors"] == 0
        pids = [sb.pid_of(p) for p in ("feed", "strategy", "risk", "oms")]
        assert sb.down() == 0
        sb.end_exchange_day()                                       # flushes the exchange's records
        ouch = list(read_ouch_log(sb.records / f"ouch-{FIRM}.log"))
        assert any(r.direction == "I" and r.message[:1] == b"O" for r in ouch), "no order reached the exchange"
        assert any(r.direction == "O" and r.message[:1] in (b"A", b"E") for r in ouch), "none accepted or filled"
        for pid in pids:
            assert not os.path.exists(f"/proc/{pid}"), f"process {pid} left running"
        for spec_ in sb.layout.segments.values():
            assert not os.path.lexists(segment_path(spec_))
        assert not list(sb.dir.glob("layout.yaml.strategy-*")), "up left its layout copy behind"
        assert f"strategy {spec.rpartition(':')[2]} from" in (sb.dir / "logs" / "strategy.log").read_text()
    finally:
        sb.close()
