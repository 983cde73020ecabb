"""Fuzz: the compiled feed path (feed/_book_fast.c) against the Python reference on random hostile sessions.

Each case is a fresh pair of feeds (tests/support/fast_feed_pair.py) given the directory, then 1..40 payloads
of random ITCH messages (unknown references, over-executions, duplicate adds, zero and huge share counts,
locate 65535, directory moves, halts) with truncations, flipped bytes and random bytes; after every payload
the two must agree on the BookUpdate bytes, the market-state slots, every counter and every book, and the C
side must never crash. FUZZ_CASES / FUZZ_SOAK / FUZZ_SEED / FUZZ_CASE as for every target (fuzzkit).
"""
from __future__ import annotations

import random

import pytest

from appliance.feed import fast

import fuzzkit

pytestmark = pytest.mark.skipif(not fast.AVAILABLE, reason="appliance.feed._book_fast is not built")

from fast_feed_pair import SYMBOLS, Pair, blocks, directory, message, random_payload  # noqa: E402

THIS = __file__
LOCATES = {"AAPL": 1, "MSFT": 2, "SPY": 3, "QQQ": 65535}


def _session(rng: random.Random) -> list[bytes]:
    opening = blocks(message("S", 0, 1, event_code="O"), *(directory(s, loc) for s, loc in LOCATES.items()))
    return [opening] + [random_payload(rng) for _ in range(rng.randint(1, 40))]


def _both(payloads: list[bytes]) -> str:
    pair = Pair(SYMBOLS)
    try:
        pair.publish_all()
        for i, payload in enumerate(payloads):
            pair.packet(payload, mold_sequence=i, rx_ns=i)
        pair.check("end", orders=True)
        return "agree"
    finally:
        pair.close()


def test_fuzz_compiled_feed_path_agrees_with_python():
    fuzzkit.run_cases("compiled-feed-path", 150, _session, _both, test_file=THIS, soak_share=1.0)
