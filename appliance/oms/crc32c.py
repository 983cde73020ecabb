"""CRC-32C (Castagnoli, reflected polynomial 0x82F63B78): the journal's record checksum.

``zlib.crc32`` is CRC-32/IEEE, a different polynomial: it cannot stand in. The fastest
implementation importable here is chosen once, at import:

0. this package's own C extension ``appliance.oms._journal_fast`` (built by setup.py);
1. the ``crc32c`` package (PyPI; SSE4.2 instruction), then ``google_crc32c``;
2. ``ext2fs_crc32c_le`` from the system's libext2fs (e2fsprogs, present on Debian-based
   systems) through ctypes: about 1 us a call here, most of it the ctypes call itself;
3. pure Python, slicing by 8 with four 64 Ki-entry tables (two bytes per lookup): several us
   for a 100-byte record.

``IMPLEMENTATION`` names the one in use; ``crc32c_at(address, length)`` is offered by the
native paths only (a checksum straight from a mapped file, no copy). ``crc32c_batch`` checks
many records at once with numpy (recovery reads a million records through it).

All functions compute the standard CRC-32C: ``crc32c(b"123456789") == 0xE3069283``; the
``crc`` argument continues an earlier result (``crc32c(b, crc32c(a)) == crc32c(a + b)``).
"""
from __future__ import annotations

import ctypes
import ctypes.util

POLYNOMIAL = 0x82F63B78
CHECK_VALUE = 0xE3069283          # CRC-32C of b"123456789"
_MASK = 0xFFFFFFFF


def _byte_tables(count: int) -> list[list[int]]:
    """``tables[k][b]``: the CRC register after byte ``b`` followed by ``k`` zero bytes."""
    first = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ POLYNOMIAL if crc & 1 else crc >> 1
        first.append(crc)
    tables = [first]
    for _ in range(1, count):
        previous = tables[-1]
        tables.append([(value >> 8) ^ first[value & 0xFF] for value in previous])
    return tables


_BYTE_TABLES = _byte_tables(8)
_T0 = _BYTE_TABLES[0]
_PAIR_TABLES: list[list[int]] | None = None     # built on first pure-Python use (about 0.1 s)


def _pair_tables() -> list[list[int]]:
    """Four tables indexed by two bytes: bytes (0,1), (2,3), (4,5), (6,7) of an 8-byte chunk."""
    global _PAIR_TABLES
    if _PAIR_TABLES is None:
        t = _BYTE_TABLES
        tables = []
        for pair in range(4):
            low, high = t[7 - 2 * pair], t[6 - 2 * pair]
            tables.append([low[w & 0xFF] ^ high[w >> 8] for w in range(65536)])
        _PAIR_TABLES = tables
    return _PAIR_TABLES


def crc32c_python(data, crc: int = 0) -> int:
    """Pure Python: eight bytes per step through four two-byte tables, then byte by byte."""
    a, b, c, d = _pair_tables()
    t0 = _T0
    crc ^= _MASK
    view = memoryview(data).cast("B") if not isinstance(data, (bytes, bytearray)) else data
    n = len(view)
    end = n - (n & 7)
    from_bytes = int.from_bytes
    i = 0
    while i < end:
        w = from_bytes(view[i:i + 8], "little") ^ crc
        crc = a[w & 0xFFFF] ^ b[(w >> 16) & 0xFFFF] ^ c[(w >> 32) & 0xFFFF] ^ d[w >> 48]
        i += 8
    while i < n:
        crc = t0[(crc ^ view[i]) & 0xFF] ^ (crc >> 8)
        i += 1
    return crc ^ _MASK


def _load_extension():
    """The repository's own C extension (built with the package): no dependency, no ctypes call."""
    try:
        from appliance.oms import _journal_fast
    except ImportError:
        return None
    if _journal_fast.crc32c(b"123456789") != CHECK_VALUE:
        return None
    return "appliance C extension (slicing by 8)", _journal_fast.crc32c


def _load_package():
    try:
        import crc32c as package           # type: ignore[import-not-found]
        if package.crc32c(b"123456789") == CHECK_VALUE:
            return "crc32c package", lambda data, crc=0, _f=package.crc32c: _f(data, crc)
    except Exception:
        pass
    try:
        import google_crc32c as package    # type: ignore[import-not-found]
        if package.value(b"123456789") == CHECK_VALUE:
            return "google_crc32c", lambda data, crc=0, _f=package.extend: _f(crc, bytes(data))
    except Exception:
        pass
    return None


def _load_libext2fs():
    """``ext2fs_crc32c_le(crc, pointer, length)``: the raw register update (no pre/post inversion)."""
    names = ["libext2fs.so.2", ctypes.util.find_library("ext2fs")]
    for name in names:
        if not name:
            continue
        try:
            library = ctypes.CDLL(name)
            function = library.ext2fs_crc32c_le
        except (OSError, AttributeError):
            continue
        function.argtypes = (ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t)
        function.restype = ctypes.c_uint32
        if function(_MASK, b"123456789", 9) ^ _MASK != CHECK_VALUE:
            continue
        return function
    return None


def _native_bytes(function):
    from_buffer = ctypes.c_char.from_buffer
    addressof = ctypes.addressof

    def crc32c(data, crc: int = 0) -> int:
        if isinstance(data, bytes):
            return function(crc ^ _MASK, data, len(data)) ^ _MASK
        view = memoryview(data).cast("B")
        if view.readonly or not view.contiguous:
            raw = bytes(view)
            return function(crc ^ _MASK, raw, len(raw)) ^ _MASK
        if not len(view):
            return crc
        return function(crc ^ _MASK, addressof(from_buffer(view)), len(view)) ^ _MASK
    return crc32c


_package = _load_extension() or _load_package()
_ext2fs = None if _package else _load_libext2fs()

if _package is not None:
    IMPLEMENTATION, crc32c = _package
    crc32c_at = None
elif _ext2fs is not None:
    IMPLEMENTATION = "libext2fs (ctypes)"
    crc32c = _native_bytes(_ext2fs)

    def crc32c_at(address: int, length: int, crc: int = 0, _f=_ext2fs) -> int:
        """The CRC-32C of ``length`` bytes at a raw ``address`` (a mapped file), no copy."""
        return _f(crc ^ _MASK, address, length) ^ _MASK
else:
    IMPLEMENTATION = "pure Python (slicing by 8)"
    crc32c = crc32c_python
    crc32c_at = None


# ------------------------------------------------------------------ numpy batch (recovery)

_NUMPY_TABLES = None


def _numpy_tables():
    global _NUMPY_TABLES
    if _NUMPY_TABLES is None:
        import numpy as np
        t = [np.array(table, dtype=np.uint32) for table in _BYTE_TABLES[:4]]
        words = np.arange(65536, dtype=np.uint32)
        low = t[3][words & 0xFF] ^ t[2][words >> 8]      # bytes 0, 1 of a 4-byte word
        high = t[1][words & 0xFF] ^ t[0][words >> 8]     # bytes 2, 3
        _NUMPY_TABLES = (t[0], low, high)
    return _NUMPY_TABLES


def crc32c_batch(buffer, offsets, lengths, chunk: int = 8192):
    """CRC-32C of many byte ranges of ``buffer`` (numpy arrays of offsets and lengths).

    Ranges of equal length are checked together, four bytes per step across the whole
    group with two 64 Ki-entry tables: a million 100-byte records take well under a second
    where a per-record Python call would take several.
    """
    import numpy as np
    t0, low, high = _numpy_tables()
    data = np.frombuffer(buffer, dtype=np.uint8)
    offsets = np.asarray(offsets, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    result = np.zeros(len(offsets), dtype=np.uint32)
    for length in np.unique(lengths):
        length = int(length)
        members = np.flatnonzero(lengths == length)
        words = length // 4
        columns = np.arange(words * 4, dtype=np.int64)
        tail_columns = np.arange(words * 4, length, dtype=np.int64)
        for start in range(0, len(members), chunk):
            index = members[start:start + chunk]
            base = offsets[index]
            crc = np.full(len(index), _MASK, dtype=np.uint32)
            if words:
                block = data[base[:, None] + columns[None, :]]
                block = np.ascontiguousarray(block).view("<u4").reshape(len(index), words)
                for column in range(words):
                    x = crc ^ block[:, column]
                    crc = low[x & 0xFFFF] ^ high[x >> 16]
            if len(tail_columns):
                tail = data[base[:, None] + tail_columns[None, :]]
                for column in range(len(tail_columns)):
                    crc = t0[(crc ^ tail[:, column]) & 0xFF] ^ (crc >> 8)
            result[index] = crc ^ np.uint32(_MASK)
    return result
