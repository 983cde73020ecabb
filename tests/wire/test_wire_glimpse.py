"""The GLIMPSE 5.0 Snapshot message: 'M' and the ITCH sequence number as 20 ASCII characters."""
from __future__ import annotations

import pytest

from appliance.wire import glimpse
from appliance.wire.errors import WireFormatError


@pytest.mark.parametrize("sequence", [1, 2, 12345, 10**20 - 1])
def test_the_snapshot_message_round_trips(sequence):
    message = glimpse.snapshot(sequence)
    assert len(message) == 21 and message[:1] == b"M"
    assert message[1:] == str(sequence).rjust(20).encode()      # right-justified ASCII numeric
    assert glimpse.decode_snapshot(message) == sequence


@pytest.mark.parametrize("bad", [b"", b"M", b"M" + b"1" * 19, b"M" + b"1" * 21, b"A" + b"1".rjust(20),
                                 b"M" + b"x" * 20, b"M" + b"-1".rjust(20), b"M" + b" " * 20, b"M" + b"0" * 20])
def test_anything_else_is_a_wire_format_error(bad):
    with pytest.raises(WireFormatError):
        glimpse.decode_snapshot(bad)
