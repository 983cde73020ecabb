"""The compiled feed path against the Python reference over the bench feed's generated days
(bench/itch.generate_day_file), cut into MoldUDP64-sized payloads as bench feed cuts them: several seeds,
every symbol and a subset, compared packet by packet (tests/support/fast_feed_pair.py). Correctness of
what the bench measures, not its speed."""
from __future__ import annotations

import pytest

from appliance.bench.feed_replay import _packet_bounds, directory_symbols
from appliance.bench.itch import generate_day_file
from appliance.feed import fast
from appliance.wire import itch

pytestmark = pytest.mark.skipif(not fast.AVAILABLE, reason="appliance.feed._book_fast is not built")

from fast_feed_pair import Pair  # noqa: E402


def _day(tmp_path, seed: int, symbols: int = 12, orders: int = 4000) -> tuple[bytes, list[str]]:
    path = tmp_path / f"day-{seed}.itch"
    generate_day_file(str(path), orders, seed, symbols)
    data = path.read_bytes()
    return data, directory_symbols(data, symbols)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("subset", [False, True])
def test_generated_days_packet_by_packet(tmp_path, seed, subset):
    data, names = _day(tmp_path, seed)
    p = Pair(names[::3] if subset else names)
    try:
        p.publish_all()
        updates = 0
        for start, stop in _packet_bounds(data, len(data), 1400):
            updates += len(p.packet(data[start:stop], mold_sequence=start, rx_ns=stop))
        p.check("end of day", orders=True)
        assert updates > 100 and p.fast.counters[fast.COUNTER_NAMES.index("messages")] > 1000
        assert (p.fast.scan_counters[itch.FILTERED_OUT] > 0) == subset
    finally:
        p.close()
