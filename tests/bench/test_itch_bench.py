"""``appliance bench itch`` runs end to end on a small file and reports the JSON shape the issue asks for."""
from __future__ import annotations

import json

import pytest

from appliance.cli import main


def test_bench_itch_json_shape(capsys):
    pytest.importorskip("itch", reason="itchfeed (the bench extra) is not installed")
    assert main(["bench", "itch", "--json", "--messages", "20000"]) == 0
    report = json.loads(capsys.readouterr().out)
    results = report["results"]
    for name in ("full_decode", "filtered", "itchfeed"):
        assert results[name]["msgs_per_s"] > 0, name
    assert results["full_decode"]["messages"] == report["messages"] >= 20000
    assert results["itchfeed"]["messages"] == report["messages"]   # same bytes, same count
    assert 0 < results["filtered"]["decoded"] < report["messages"]


def test_generator_is_reproducible(tmp_path):
    from appliance.bench.itch import generate_day_file
    from appliance.wire.dayfile import DayFileReader

    a, b = tmp_path / "a", tmp_path / "b"
    assert generate_day_file(str(a), 3000, seed=1) == generate_day_file(str(b), 3000, seed=1)
    assert a.read_bytes() == b.read_bytes()
    types = {}
    for raw in DayFileReader(a).iter_raw():
        types[raw[0]] = types.get(raw[0], 0) + 1
    order_messages = sum(types.get(t, 0) for t in (b"A", b"D", b"E", b"X", b"U"))
    assert order_messages > 0.9 * 3000           # mostly A, D, E, X, U


def test_generated_books_are_never_locked_or_crossed_and_prices_are_whole_cents(tmp_path):
    """A venue matches a crossing order at once, so a recorded day's books are never crossed; the generated
    day's were most of the time (independent uniform prices per side), and a market maker refuses to quote
    a crossed book: ``appliance backtest`` of the bench day sent next to no orders."""
    from appliance.bench.feed_replay import directory_symbols
    from appliance.bench.itch import generate_day_file
    from appliance.feed.books import BookSet
    from appliance.wire import itch

    path = tmp_path / "day.itch"
    generate_day_file(str(path), 20_000, seed=2, symbols=20)
    data = path.read_bytes()
    books = BookSet(directory_symbols(data, 20))
    checked = 0
    for raw in itch.BlockScanner(books.subscribed_locates, strict=True).scan(data):
        books.apply(raw)
        if raw[0] in (b"A", b"F", b"U"):
            price = raw[-2] if raw[0] == b"F" else raw[-1]
            assert price % 100 == 0, raw
        for book in books.books:
            assert not (book.crossed or book.locked), (raw, book)
        checked += 1
    assert checked > 20_000 and books.counter_values()["crossed"] == 0
