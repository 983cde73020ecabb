"""What the simulated exchange writes down: the ITCH day, each firm's OUCH traffic, the report.

In ``directory``:

- ``itch.bin``: every ITCH message of the session in NASDAQ BinaryFILE framing (u16 length,
  message), the same bytes the feed carried; ``appliance itch decode`` reads it.
- ``ouch-<firm>.log``: the firm's OUCH messages both ways, one record per message:
  ``OUCH_LOG_HEADER`` (u16 length of what follows, direction 'I' from the firm or 'O' to it,
  u64 epoch ns), then the message. ``read_ouch_log`` reads it back.
- ``report.json``: the end-of-day report (``report.py``), written at the close.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import BinaryIO, Iterator, NamedTuple

from appliance.wire.dayfile import DayFileWriter
from appliance.wire.errors import WireFormatError
from appliance.wire.schema import MessageLayout, char, u16, u64

OUCH_LOG_HEADER = MessageLayout(None, "OUCH log record header",
                                (u16("record_length"), char("direction"), u64("timestamp")), type_field=None)
_OUCH_RECORD = OUCH_LOG_HEADER.struct
_LENGTH_SIZE = OUCH_LOG_HEADER.offset_of["direction"]         # the length counts what follows it
_COUNTED_HEADER = OUCH_LOG_HEADER.size - _LENGTH_SIZE
INBOUND = b"I"
OUTBOUND = b"O"


class OuchLogRecord(NamedTuple):
    direction: str
    timestamp: int
    message: bytes


class Records:
    """The open record files of one session (buffered; flushed at ``flush`` and ``close``)."""

    def __init__(self, directory: str | os.PathLike, firms: list[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.itch_path = self.directory / "itch.bin"
        self.report_path = self.directory / "report.json"
        self._itch = DayFileWriter(self.itch_path)
        self._ouch: dict[str, BinaryIO] = {
            firm: open(self.directory / f"ouch-{firm}.log", "wb", buffering=1 << 16) for firm in firms}
        self.closed = False

    def itch(self, message: bytes) -> None:
        self._itch.write_message(message)

    def ouch(self, firm: str, direction: bytes, timestamp: int, message: bytes) -> None:
        log = self._ouch.get(firm)
        if log is not None:
            log.write(_OUCH_RECORD.pack(len(message) + _COUNTED_HEADER, direction, timestamp))
            log.write(message)

    def write_report(self, report: dict) -> None:
        tmp = self.report_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(report, indent=1, sort_keys=False))
        os.replace(tmp, self.report_path)

    def flush(self) -> None:
        if not self.closed:
            self._itch.flush()
            for log in self._ouch.values():
                log.flush()

    def close(self) -> None:
        if not self.closed:
            self._itch.close()
            for log in self._ouch.values():
                log.close()
            self.closed = True


def read_ouch_log(path: str | os.PathLike) -> Iterator[OuchLogRecord]:
    """The records of one ``ouch-<firm>.log``; a truncated last record (a crash mid-write) is left out.
    A record whose direction is not I or O is not one this log holds: ``WireFormatError`` at its offset."""
    data = Path(path).read_bytes()
    offset = 0
    while offset + OUCH_LOG_HEADER.size <= len(data):
        length, direction, timestamp = _OUCH_RECORD.unpack_from(data, offset)
        end = offset + _LENGTH_SIZE + length
        if length < _COUNTED_HEADER or end > len(data):
            return
        if direction not in (INBOUND, OUTBOUND):
            raise WireFormatError(offset + _LENGTH_SIZE, f"OUCH log record direction {direction!r} is not I or O")
        yield OuchLogRecord(direction.decode("ascii"), timestamp, data[offset + OUCH_LOG_HEADER.size:end])
        offset = end
