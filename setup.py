"""Build the small C extension modules; everything else lives in pyproject.toml."""
from setuptools import Extension, setup

C_FLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"]

setup(
    ext_modules=[
        # C11 atomics for the SPSC ring, counters, heartbeats and doorbells.
        Extension("appliance.runtime._shm", ["appliance/runtime/_shm.c"], extra_compile_args=C_FLAGS),
        Extension("appliance.wire._itch_fast", ["appliance/wire/_itch_fast.c"], extra_compile_args=C_FLAGS),
        # The feed's books, top-N snapshots and BookUpdate writes (appliance.feed.fast; feed/books.py is the reference).
        Extension("appliance.feed._book_fast", ["appliance/feed/_book_fast.c"], extra_compile_args=C_FLAGS),
        # The OMS journal's record append (the only one: the journal does not open without it) and CRC-32C.
        # The risk check set for the common case (appliance.risk.fast; risk/checks.py is the reference and fallback).
        Extension("appliance.risk._risk_fast", ["appliance/risk/_risk_fast.c"], extra_compile_args=C_FLAGS),
        Extension("appliance.oms._journal_fast", ["appliance/oms/_journal_fast.c"], extra_compile_args=C_FLAGS),
        # The reference market maker's quote step (strategy/market_maker.py's desired_quotes is the reference).
        Extension("appliance.strategy._quote_fast", ["appliance/strategy/_quote_fast.c"], extra_compile_args=C_FLAGS),
        # The replay venue's recorded-book bookkeeping (appliance/replay/venue.py is the reference and fallback).
        Extension("appliance.replay._venue_fast", ["appliance/replay/_venue_fast.c"], extra_compile_args=C_FLAGS),
    ],
)
