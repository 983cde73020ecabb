"""NASDAQ GLIMPSE 5.0: the point-in-time snapshot of the book, ITCH 5.0 messages over SoupBinTCP.

A GLIMPSE client logs in to SoupBinTCP (from sequence 1) and receives, as sequenced data, ITCH
5.0 messages describing the current state of the book (system event, stock directory, trading
action, an Add Order for every displayed order), then one message of GLIMPSE's own, the Snapshot
message (section 1.7 of the GLIMPSE 5.0 spec): type 'M' and the ITCH sequence number as 20 ASCII
characters. The snapshot is exactly "every ITCH message before that sequence number applied", so a
client continues with the MoldUDP64 stream from that number on. The server then ends the session
(SoupBinTCP End of Session).

Only the layout of the Snapshot message lives here; the ITCH messages are ``appliance.wire.itch``'s
the framing is ``appliance.wire.soupbintcp``'s and the login ``appliance.wire.soupbintcp_session``'s.
"""
from __future__ import annotations

from appliance.wire.errors import WireFormatError
from appliance.wire.schema import MessageLayout, char, numeric

# The ITCH sequence number is ASCII numeric (right-justified, space padded) like SoupBinTCP's numbers.
SNAPSHOT = MessageLayout("M", "GLIMPSE Snapshot", (char("type"), numeric("itch_sequence_number", 20)),
                         expected_size=21)
SNAPSHOT_TYPE = SNAPSHOT.type_byte[0]


def snapshot(itch_sequence_number: int) -> bytes:
    """The Snapshot message: the snapshot holds every ITCH message before ``itch_sequence_number``."""
    return SNAPSHOT.encode({"type": "M", "itch_sequence_number": itch_sequence_number})


def decode_snapshot(message) -> int:
    """The ITCH sequence number of a Snapshot message; ``WireFormatError`` if it is not one (or is 0)."""
    if len(message) != SNAPSHOT.size or message[0] != SNAPSHOT_TYPE:
        raise WireFormatError(0, f"not a GLIMPSE Snapshot message: {bytes(message[:24])!r}")
    sequence = SNAPSHOT.unpack_from(message, 0)[1]
    if sequence < 1:
        raise WireFormatError(1, "GLIMPSE Snapshot: the ITCH sequence number must be at least 1")
    return sequence
