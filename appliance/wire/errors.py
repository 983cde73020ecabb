"""The one exception every wire decoder raises for input it cannot accept.

Everything that arrives from outside (a socket, a day file) is untrusted. A
decoder that meets truncated, oversized, unknown-type or garbage bytes raises
``WireFormatError`` and nothing else, carrying the byte offset where the problem
starts and a reason a person can act on. Callers on a hot path catch this one
type, count the event and drop the input.
"""
from __future__ import annotations


class WireFormatError(ValueError):
    """Bytes that do not form a valid message; ``offset`` is where the problem starts."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"at offset {offset}: {reason}")
        self.offset = offset
        self.reason = reason

    def __reduce__(self):  # keep it picklable across processes
        return (type(self), (self.offset, self.reason))


class WireEncodeError(ValueError):
    """A value the caller asked to encode does not fit its field (a programming error, not bad input)."""
