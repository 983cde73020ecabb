"""Parity: one recorded day through ``appliance backtest`` and through the whole multi-process appliance
against the exchange's replay of it gives the same orders from the reference market maker.

The day: the simulated exchange's own flow over the layout's five instruments, recorded offline
(``sim/recorded_day.py``), one operation every ``STEP_MS`` of event time (at speed 1 the appliance
answers each packet long before the next comes, as the zero-latency backtest assumes; on a machine
so loaded that the appliance takes longer than that to answer, the live run sees another sequence of
books and fills and the orders differ: ``PARITY_STEP_MS`` spaces the day further). Both runs use
the repository's strategy parameters, fees, risk limits and instruments; timers an hour apart (the
day is seconds long: no timer fires; the strategy process's interval cannot be 0). What is compared:
every order action that reached the venue while the day was open (new, replace, cancel: symbol, side,
shares, price, and which earlier order a replace or cancel names, order ids numbered in order of
appearance) - in the backtest, the calls on the replay venue; in the appliance, the OUCH messages the
exchange received (its records). The strategy's stop (its cancel-all) is left out of both.
"""
from __future__ import annotations

import dataclasses
import os

import pytest

from appliance.exchange.records import read_ouch_log
from appliance.runtime.polling import poll_until
from appliance.sim.sandbox import ROOT, Sandbox
from appliance.wire import ouch

pytestmark = pytest.mark.e2e

STEP_MS = int(os.environ.get("PARITY_STEP_MS", "250"))           # event time between two recorded operations
OPERATIONS = int(os.environ.get("PARITY_OPERATIONS", "60"))      # 15 s of event time by default
HOUR_NS = 3_600 * 10**9
ANSWER_LEAD_MS = "50"        # the exchange holds an instant's market data this long behind the fills it caused


def record(tmp_path):
    from appliance.config.instruments import load_instruments
    from appliance.sim.recorded_day import record_day
    instruments = load_instruments(str(ROOT / "config" / "instruments.yaml"))
    prices = {i.symbol: i.reference_price for i in instruments}
    return record_day(tmp_path / "recorded", prices, OPERATIONS, seed=5, step_ns=STEP_MS * 1_000_000)


class Numbering:
    """Order ids (ints or OUCH tokens) as their order of appearance: 1, 2, ..."""

    def __init__(self):
        self.ids = {}

    def __call__(self, key) -> int:
        return self.ids.setdefault(key, len(self.ids) + 1)


def backtest_actions(day_file) -> list[tuple]:
    from appliance.backtest.cli import build_setup
    from appliance.backtest.engine import Backtest
    from appliance.cli import build_parser
    args = build_parser().parse_args(["backtest", str(day_file), "--params", str(ROOT / "config/strategy.yaml"),
                                      "--fees", str(ROOT / "config/fees.yaml"), "--latency", "zero"])
    setup = dataclasses.replace(build_setup(args), timer_interval_ns=HOUR_NS)
    run = Backtest(setup)
    actions, number, stopping = [], Numbering(), []
    venue = run.venue
    submit, replace, cancel, finish = venue.submit, venue.replace, venue.cancel, run._finish

    def on_submit(token, symbol, side, shares, price, tif, now_ns):
        if not stopping:
            actions.append(("new", number(token), symbol, side, shares, price))
        submit(token, symbol, side, shares, price, tif, now_ns)

    def on_replace(token, new_token, shares, price, now_ns):
        if not stopping:
            actions.append(("replace", number(token), number(new_token), shares, price))
        replace(token, new_token, shares, price, now_ns)

    def on_cancel(token, now_ns, shares=0):
        if not stopping:
            actions.append(("cancel", number(token), shares))
        cancel(token, now_ns, shares)

    def on_finish(end_ns):
        stopping.append(end_ns)
        finish(end_ns)
    venue.submit, venue.replace, venue.cancel, run._finish = on_submit, on_replace, on_cancel, on_finish
    run.run()
    return actions


def appliance_actions(tmp_path, day_file) -> list[tuple]:
    with Sandbox(tmp_path / "sandbox", replay=str(day_file), replay_speed="1",
                 replay_args=("--answer-lead", ANSWER_LEAD_MS),
                 params={"strategy": {"timer_interval_ms": HOUR_NS // 1_000_000}}) as sandbox:
        sandbox.start()
        assert sandbox.start_replay()["ok"] is True
        assert poll_until(lambda: sandbox.exchange.proc.poll() is not None, OPERATIONS * STEP_MS / 1000 + 60, 0.1), \
            f"the replay did not end:\n{sandbox.exchange_output()[-3000:]}"
        log = sandbox.exchange_runs[-1] / "ouch-ALGO1.log"
        number, actions = Numbering(), []
        for entry in read_ouch_log(log):
            if entry.direction != "I":
                continue
            m = ouch.decode_inbound(entry.message)
            if m["type"] == "O":
                actions.append(("new", number(m["order_token"]), m["stock"], m["buy_sell_indicator"], m["shares"],
                                m["price"]))
            elif m["type"] == "U":
                actions.append(("replace", number(m["existing_order_token"]), number(m["replacement_order_token"]),
                                m["shares"], m["price"]))
            elif m["type"] == "X":
                actions.append(("cancel", number(m["order_token"]), m["shares"]))
        return actions


def test_the_backtest_and_the_appliance_send_the_same_orders_on_the_same_day(tmp_path):
    day_file = record(tmp_path)
    expected = backtest_actions(day_file)
    assert len([a for a in expected if a[0] == "new"]) >= 10           # the day makes the market maker work
    got = appliance_actions(tmp_path, day_file)
    first_difference = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
    assert got == expected, (f"{len(got)} actions live, {len(expected)} in the backtest; first difference at "
                             f"{first_difference}: live {got[first_difference:first_difference + 3]}, backtest "
                             f"{expected[first_difference:first_difference + 3]}")
