"""ITCH 5.0 day files (NASDAQ BinaryFILE): messages back to back, each after a u16 length.

Both sides stream: the reader holds one chunk (1 MiB by default) plus at most one
partial message, so a file of many gigabytes never sits in memory; the writer
packs messages into a reusable buffer and flushes it when full. A file that ends
in the middle of a message raises ``WireFormatError`` with the file offset where
that message starts.
"""
from __future__ import annotations

import os
from typing import Any, BinaryIO, Iterator

from appliance.wire import itch
from appliance.wire.errors import WireFormatError

_LENGTH = itch.BLOCK.struct
DEFAULT_CHUNK = 1 << 20


class DayFileReader:
    """Streams the messages of a BinaryFILE as raw tuples (``iter_raw``) or dicts (``__iter__``).

    ``source`` is a path or a binary file object. ``strict`` (the default) raises
    ``WireFormatError`` (file offset, reason) on the first bad block; otherwise bad
    blocks are counted in ``scanner.malformed`` and skipped. A locate filter map
    (see ``itch.BlockScanner``) drops messages for unsubscribed stock locates.
    """

    def __init__(self, source: str | os.PathLike | BinaryIO, *, chunk_size: int = DEFAULT_CHUNK,
                 strict: bool = True, subscribed_locates=None, use_c: bool | None = None) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self.source = source
        self.chunk_size = chunk_size
        self.scanner = itch.BlockScanner(subscribed_locates, strict=strict, use_c=use_c)
        self.bytes_consumed = 0  # file offset up to which every block has been walked

    def iter_raw(self) -> Iterator[tuple]:
        """Raw tuples of every message (``itch.raw_to_dict`` turns one into a dict)."""
        if isinstance(self.source, (str, bytes, os.PathLike)):
            with open(self.source, "rb") as file:
                yield from self._iter_file(file)
        else:
            yield from self._iter_file(self.source)

    def _iter_file(self, file: BinaryIO) -> Iterator[tuple]:
        pending = b""          # a block cut by the chunk boundary, carried to the next chunk
        base = self.bytes_consumed
        while True:
            chunk = file.read(self.chunk_size)
            if not chunk:
                break
            data = pending + chunk if pending else chunk
            walk = self.scanner.scan(data)
            try:
                yield from walk
            except WireFormatError as exc:
                raise WireFormatError(base + exc.offset, exc.reason) from None
            stop = walk.offset
            del walk
            pending = data[stop:]
            base += stop
            self.bytes_consumed = base
        if pending:
            if len(pending) < 2:
                reason = "file ends mid-message: 1 byte of a 2-byte block length"
            else:
                (length,) = _LENGTH.unpack_from(pending)
                reason = f"file ends mid-message: block says {length} bytes, only {len(pending) - 2} present"
            raise WireFormatError(base, reason)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Dicts of every message (convenience; the raw path is several times faster)."""
        by_byte = itch.LAYOUT_BY_BYTE
        for raw in self.iter_raw():
            yield by_byte[raw[0][0]].to_dict(raw)


class DayFileWriter:
    """Writes a BinaryFILE through a reusable buffer; use as a context manager or call ``close``."""

    def __init__(self, target: str | os.PathLike | BinaryIO, *, buffer_size: int = DEFAULT_CHUNK) -> None:
        self._owns_file = isinstance(target, (str, bytes, os.PathLike))
        self.file: BinaryIO = open(target, "wb") if self._owns_file else target  # type: ignore[assignment]
        self.buffer = bytearray(max(buffer_size, 2 + 65535))
        self.used = 0
        self.messages_written = 0

    def _room(self, size: int) -> int:
        if self.used + 2 + size > len(self.buffer):
            self.flush()
        return self.used

    def write_raw(self, layout, *values) -> None:
        """Append one message from raw values (``layout.pack_into`` order); the hot path of generators."""
        offset = self._room(layout.size)
        _LENGTH.pack_into(self.buffer, offset, layout.size)
        layout.pack_into(self.buffer, offset + 2, *values)
        self.used = offset + 2 + layout.size
        self.messages_written += 1

    def write(self, fields: dict[str, Any]) -> None:
        """Append one message given as a dict (validated)."""
        self.write_message(itch.encode(fields))

    def write_message(self, message: bytes) -> None:
        """Append one already-encoded message (any bytes up to 65535, written as given)."""
        if len(message) > 0xFFFF:
            raise ValueError("a BinaryFILE block holds at most 65535 bytes")
        offset = self._room(len(message))
        _LENGTH.pack_into(self.buffer, offset, len(message))
        self.buffer[offset + 2:offset + 2 + len(message)] = message
        self.used = offset + 2 + len(message)
        self.messages_written += 1

    def flush(self) -> None:
        if self.used:
            with memoryview(self.buffer) as view:
                self.file.write(view[:self.used])
            self.used = 0
        self.file.flush()

    def close(self) -> None:
        self.flush()
        if self._owns_file:
            self.file.close()

    def __enter__(self) -> "DayFileWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
