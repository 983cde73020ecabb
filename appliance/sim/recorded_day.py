"""A day of the simulated exchange written offline: its background flow through its matching engine, on a
virtual clock, recorded as ``appliance exchange --records`` records a live day (itch.bin and the rest),
in seconds instead of hours. The backtest's tests and benchmark replay such days."""
from __future__ import annotations

import datetime
from pathlib import Path

from appliance.exchange.participants import BackgroundFlow
from appliance.exchange.records import Records
from appliance.exchange.venue import Venue

OPEN_UTC = datetime.datetime(2026, 1, 5, 14, 30, tzinfo=datetime.timezone.utc)      # 09:30 in New York


def record_day(directory: str | Path, prices: dict[str, int], operations: int, *, seed: int = 1,
               step_ns: int = 1_000_000, round_lot: int = 100, volatility_bp: float = 1.0) -> Path:
    """``operations`` background operations over ``prices`` (symbol -> reference price), one every
    ``step_ns`` of virtual time from 09:30 New York; returns the path of the recorded itch.bin."""
    clock_ns = [int(OPEN_UTC.timestamp()) * 1_000_000_000]

    def clock() -> int:
        return clock_ns[0]
    records = Records(directory, [])
    flow = BackgroundFlow(prices, rate=0.0, seed=seed, volatility_bp=volatility_bp, round_lot=round_lot)
    venue = Venue([(symbol, round_lot) for symbol in prices], {}, session="RECORDED01", send_packet=lambda packet: None,
                  records=records, background=flow, clock=clock)
    venue.open()
    for _ in range(operations):
        clock_ns[0] += step_ns
        venue.run_background(1)
    clock_ns[0] += step_ns
    venue.close()
    return records.itch_path
