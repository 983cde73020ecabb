"""The control table: the few shared words the appliance's safety depends on.

Each word is a u64 on its own 64-byte line with exactly one writing process (named below);
every other process reads it with an acquire load. The OMS reads ``gate_open`` and
``gate_reasons`` before every new order; shmtop, the exporter and ``appliance status`` show
all of them. Codes are in ``appliance.messages.codes``.
"""
from __future__ import annotations

import time

from appliance.runtime import _shm
from appliance.runtime.layout import CONTROL_WORDS, Layout

WORD_SIZE = 64
WRITER_OF = {name: writer for name, writer in CONTROL_WORDS}
INDEX_OF = {name: i for i, (name, _writer) in enumerate(CONTROL_WORDS)}
SIGNED = {"clock_offset_ns"}


class ControlWords:
    """Loads and stores of the control table's words. ``writer``: the process whose words this
    handle may store (``"*"``: any word, for tests that play several processes); None: read only."""

    def __init__(self, buffer, layout: Layout, writer: str | None = None):
        table = layout.table_of_kind("control")
        self.base = table.offset
        self.atomics = _shm.AtomicView(buffer, writer is not None)   # a reader-only handle maps read-only
        self.writer = writer
        self.offset = {name: self.base + i * WORD_SIZE for name, i in INDEX_OF.items()}

    def get(self, name: str) -> int:
        offset = self.offset[name]
        return self.atomics.load_signed(offset) if name in SIGNED else self.atomics.load(offset)

    def set(self, name: str, value: int) -> None:
        if self.writer is None:
            raise PermissionError(f"this handle reads the control words; to set {name} open one with "
                                  f"memory.control('{WRITER_OF[name]}') (or memory.control('*') in a test)")
        if self.writer != "*" and WRITER_OF[name] != self.writer:
            raise PermissionError(f"control word {name} is written by {WRITER_OF[name]}, not {self.writer}")
        self.atomics.store(self.offset[name], value & 0xFFFFFFFFFFFFFFFF)

    def snapshot(self) -> dict[str, int]:
        return {name: self.get(name) for name in INDEX_OF}

    def word_offset(self, name: str) -> int:
        """For hot paths: load with ``atomics.load(offset)`` directly."""
        return self.offset[name]

    def close(self) -> None:
        self.atomics = None


def now_ns() -> int:
    return time.time_ns()
