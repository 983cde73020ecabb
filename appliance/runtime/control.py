"""The control table: the few shared words the appliance's safety depends on.

Each word is a u64 on its own 64-byte line with exactly one writing process (named below);
every other process reads it with an acquire load. Codes are in ``appliance.messages.codes``.

The trading gate is one word, ``gate``: the open flag, the ``GateReason`` bits and the epoch
(+1 on every change) of one supervisor decision, stored with one release store and read with
one acquire load. Three separate words could be read half old, half new (an old ``open`` with a
new epoch would let the OMS skip the cancel-all that epoch asks for). ``gate_open``,
``gate_reasons`` and ``gate_epoch`` remain readable names, decoded from that one word.
"""
from __future__ import annotations

import time
from typing import NamedTuple

from appliance.runtime import _shm
from appliance.runtime.layout import CONTROL_WORDS, Layout

WORD_SIZE = 64
WRITER_OF = {name: writer for name, writer in CONTROL_WORDS}
INDEX_OF = {name: i for i, (name, _writer) in enumerate(CONTROL_WORDS)}
SIGNED = {"clock_offset_ns"}

GATE_REASONS_MASK = 0xFFFFFFFF        # bits 0-31: GateReason
GATE_OPEN_BIT = 1 << 32               # bit 32: new orders may leave
GATE_EPOCH_SHIFT = 33                 # bits 33-63: +1 on every change (wraps after 2**31 changes)
_GATE_EPOCH_MASK = (1 << 31) - 1


class GateWord(NamedTuple):
    open: int          # 1: new orders may leave (never 1 while a reason is set; 0 in a word never written)
    reasons: int       # GateReason bits
    epoch: int


def pack_gate(reasons: int, epoch: int) -> int:
    """The gate word for a decision: open exactly when there is no reason."""
    return ((epoch & _GATE_EPOCH_MASK) << GATE_EPOCH_SHIFT) | (0 if reasons else GATE_OPEN_BIT) | (
        reasons & GATE_REASONS_MASK)


def unpack_gate(word: int) -> GateWord:
    return GateWord(1 if word & GATE_OPEN_BIT else 0, word & GATE_REASONS_MASK, word >> GATE_EPOCH_SHIFT)


# Names readable like words, decoded from the one gate word.
_GATE_FIELDS = {"gate_open": 0, "gate_reasons": 1, "gate_epoch": 2}


class ControlWords:
    """Loads and stores of the control table's words. ``writer``: the process whose words this
    handle may store (``"*"``: any word, for tests that play several processes); None: read only."""

    NAMES = (*INDEX_OF, *_GATE_FIELDS)      # what ``snapshot`` returns

    def __init__(self, buffer, layout: Layout, writer: str | None = None):
        table = layout.table_of_kind("control")
        self.base = table.offset
        self.atomics = _shm.AtomicView(buffer, writer is not None)   # a reader-only handle maps read-only
        self.writer = writer
        self.offset = {name: self.base + i * WORD_SIZE for name, i in INDEX_OF.items()}

    def get(self, name: str) -> int:
        field = _GATE_FIELDS.get(name)
        if field is not None:
            return self.gate()[field]
        offset = self.offset[name]
        return self.atomics.load_signed(offset) if name in SIGNED else self.atomics.load(offset)

    def gate(self) -> GateWord:
        """The open flag, reasons and epoch of one supervisor decision (one load)."""
        return unpack_gate(self.atomics.load(self.offset["gate"]))

    def write_gate(self, reasons: int) -> GateWord:
        """The supervisor's one store of a gate decision (the epoch moves on by one)."""
        word = pack_gate(reasons, self.gate().epoch + 1)
        self.set("gate", word)
        return unpack_gate(word)

    def set(self, name: str, value: int) -> None:
        if name in _GATE_FIELDS:
            raise PermissionError(f"{name} is part of the gate word: write it whole with write_gate()")
        if self.writer is None:
            raise PermissionError(f"this handle reads the control words; to set {name} open one with "
                                  f"memory.control('{WRITER_OF[name]}') (or memory.control('*') in a test)")
        if self.writer != "*" and WRITER_OF[name] != self.writer:
            raise PermissionError(f"control word {name} is written by {WRITER_OF[name]}, not {self.writer}")
        self.atomics.store(self.offset[name], value & 0xFFFFFFFFFFFFFFFF)

    def snapshot(self) -> dict[str, int]:
        words = {name: self.get(name) for name in INDEX_OF}
        words.update(zip(_GATE_FIELDS, unpack_gate(words["gate"])))
        return words

    def word_offset(self, name: str) -> int:
        """For hot paths: load with ``atomics.load(offset)`` directly."""
        return self.offset[name]

    def close(self) -> None:
        self.atomics = None


def now_ns() -> int:
    return time.time_ns()
