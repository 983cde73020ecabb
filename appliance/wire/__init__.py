"""Wire codecs shared by the feed handler, the OMS and the simulated exchange.

One declarative table per protocol (``schema``) drives encode and decode:
``itch`` (ITCH 5.0, with the feed's locate-filter fast path and the optional C
scanner ``_itch_fast``), ``moldudp64`` (UDP framing), ``soupbintcp`` (TCP
session layer packets) with ``soupbintcp_session`` (its event-loop-free
client/server state machines), ``ouch``
(OUCH 4.2 order entry) and ``dayfile`` (BinaryFILE reader/writer). Every
decoder raises ``errors.WireFormatError(offset, reason)`` on bad input and
nothing else. Imports only the standard library.
"""
from appliance.wire.errors import WireEncodeError, WireFormatError

__all__ = ["WireFormatError", "WireEncodeError"]
