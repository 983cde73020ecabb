"""OUCH order tokens, unique for the whole trading day across restarts of the OMS.

A token is 14 characters of 0-9A-Z: a 4-character *prefix* chosen at each start of the OMS,
then a 10-character counter, both base 36. The counter continues from the highest one the
journal has seen; the prefix is ``max(last journaled prefix + 1, seconds since UTC midnight)``.
Either alone would do while the journal is intact; together they stay unique even if a power
loss took the last records of the journal (``group`` or ``page_cache`` durability), since a
restart after a power loss happens in a later second than the lost orders were sent.
"""
from __future__ import annotations

from appliance.wire.venue_time import ns_since_midnight

DIGITS = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
TOKEN_SIZE = 14
PREFIX_SIZE = 4
COUNTER_SIZE = TOKEN_SIZE - PREFIX_SIZE
MAX_PREFIX = 36 ** PREFIX_SIZE - 1
MAX_COUNTER = 36 ** COUNTER_SIZE - 1


def base36(value: int, width: int) -> bytes:
    if not 0 <= value < 36 ** width:
        raise ValueError(f"{value} does not fit {width} base-36 digits")
    out = bytearray(width)
    for i in range(width - 1, -1, -1):
        value, digit = divmod(value, 36)
        out[i] = DIGITS[digit]
    return bytes(out)


def parse_token(token) -> tuple[int, int] | None:
    """(prefix, counter) of a token this OMS made, or None for any other text."""
    raw = token.encode("ascii", "replace") if isinstance(token, str) else bytes(token)
    raw = raw.rstrip(b" ")
    if len(raw) != TOKEN_SIZE or not raw.isalnum() or raw != raw.upper():
        return None
    return int(raw[:PREFIX_SIZE], 36), int(raw[PREFIX_SIZE:], 36)


def choose_prefix(last_prefix: int | None, now_ns: int) -> int:
    second_of_day = ns_since_midnight(now_ns) // 1_000_000_000
    prefix = max(second_of_day, -1 if last_prefix is None else last_prefix + 1)
    if prefix > MAX_PREFIX:
        raise ValueError("token prefixes exhausted for the day")
    return prefix


class TokenSource:
    """Issues tokens ``prefix + counter`` in counter order. Tokens are made ahead in batches
    (``refill``, from the slow path) so that ``next()`` on the hot path is one list pop."""

    BATCH = 256

    def __init__(self, prefix: int, next_counter: int = 1):
        if not 0 <= prefix <= MAX_PREFIX:
            raise ValueError(f"token prefix {prefix} out of range")
        if not 0 <= next_counter <= MAX_COUNTER:
            raise ValueError(f"token counter {next_counter} out of range")
        self.prefix = prefix
        self._prefix_text = base36(prefix, PREFIX_SIZE).decode()
        self.next_counter = next_counter         # the counter of the token next() returns
        self._made_to = next_counter             # tokens made ahead cover [next_counter, _made_to)
        self._ready: list[bytes] = []            # made ahead, the next one last

    def refill(self, low_water: int = BATCH // 4) -> int:
        """Make a batch of tokens ahead when fewer than ``low_water`` are left; how many were made."""
        if len(self._ready) >= low_water:
            return 0
        start = self._made_to
        stop = min(start + self.BATCH, MAX_COUNTER + 1)
        prefix = self._prefix_text
        made = [(prefix + _base36_text(counter)).encode() for counter in range(stop - 1, start - 1, -1)]
        self._ready = made + self._ready
        self._made_to = stop
        return len(made)

    def peek(self) -> bytes:
        """The token ``next()`` will return."""
        if not self._ready:
            self.refill()
        return self._ready[-1]

    def next(self) -> bytes:
        ready = self._ready
        if not ready:
            if self.next_counter > MAX_COUNTER:
                raise ValueError("token counter exhausted")
            self.refill()
        self.next_counter += 1
        return ready.pop() if ready else self._ready.pop()


def _base36_text(value: int) -> str:
    digits = []
    for _ in range(COUNTER_SIZE):
        value, digit = divmod(value, 36)
        digits.append(_DIGIT_TEXT[digit])
    return "".join(reversed(digits))


_DIGIT_TEXT = DIGITS.decode()
