"""OUCH tokens: 14 alphanumeric characters, unique for the day across restarts of the OMS."""
from __future__ import annotations

import pytest

from appliance.oms.tokens import MAX_PREFIX, TokenSource, base36, choose_prefix, parse_token

SECOND = 1_000_000_000
DAY = 86_400 * SECOND


def test_tokens_are_14_alphanumeric_characters_in_counter_order():
    source = TokenSource(prefix=35, next_counter=34)
    tokens = [source.next() for _ in range(1000)]
    assert all(len(t) == 14 and t.isalnum() and t == t.upper() for t in tokens)
    assert [parse_token(t) for t in tokens] == [(35, 34 + i) for i in range(1000)]
    assert tokens[0] == b"000Z000000000Y" and source.next_counter == 1034
    assert source.peek() == source.next()


def test_a_restart_continues_the_counter_under_a_new_prefix():
    morning = 9 * 3600 * SECOND
    first = TokenSource(choose_prefix(None, 20_000 * DAY + morning), 1)
    issued = {first.next() for _ in range(500)}
    last_prefix, last_counter = parse_token(max(issued, key=lambda t: parse_token(t)[1]))
    # restarted a moment later (the same second, even): a later prefix, the counter carried on
    second = TokenSource(choose_prefix(last_prefix, 20_000 * DAY + morning), last_counter + 1)
    again = {second.next() for _ in range(500)}
    assert not issued & again
    assert second.prefix == first.prefix + 1
    # restarted after a power loss took the journal's last records: the clock moved on
    third = TokenSource(choose_prefix(None, 20_000 * DAY + morning + 5 * SECOND), 1)
    assert not issued & {third.next() for _ in range(500)}


def test_parse_token_refuses_what_this_oms_did_not_make():
    assert parse_token(b"S1") is None
    assert parse_token(b"abcdefghijklmn") is None
    assert parse_token(b"ABCDEFGHIJK_MN") is None
    assert parse_token("0001000000000A") == (1, 10)
    assert base36(36, 2) == b"10"
    with pytest.raises(ValueError):
        base36(36 ** 2, 2)
    with pytest.raises(ValueError):
        choose_prefix(MAX_PREFIX, 0)
