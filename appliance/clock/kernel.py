"""The kernel's view of CLOCK_REALTIME discipline, through adjtimex(2) with modes=0 (read-only, no privilege).

STA_UNSYNC set means nothing (ntpd, chrony, phc2sys) is disciplining the clock;
``maxerror`` is the kernel's bound on the error, in microseconds, grown by
500 ppm while nobody refreshes it. The clock guard and ``appliance preflight``
read this; linuxptp's own view comes from pmc.
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

STA_UNSYNC = 0x0040
TIME_STATES = {0: "TIME_OK", 1: "TIME_INS", 2: "TIME_DEL", 3: "TIME_OOP", 4: "TIME_WAIT", 5: "TIME_ERROR"}


class _Timeval(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long)]


class _Timex(ctypes.Structure):
    """struct timex from <sys/timex.h> (Linux, LP64); ctypes supplies the natural padding."""
    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long), ("tolerance", ctypes.c_long),
        ("time", _Timeval), ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int), ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long), ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long), ("tai", ctypes.c_int),
        ("_reserved", ctypes.c_int * 11),
    ]


@dataclass(frozen=True)
class KernelClock:
    state: str                 # TIME_OK, TIME_ERROR, ...
    status: int                # STA_* bits
    maxerror_us: int
    esterror_us: int
    offset: int
    tai_offset_s: int

    @property
    def unsynchronised(self) -> bool:
        return bool(self.status & STA_UNSYNC)


def read_kernel_clock() -> KernelClock:
    libc = ctypes.CDLL(None, use_errno=True)
    timex = _Timex()               # modes = 0: read only
    rc = libc.adjtimex(ctypes.byref(timex))
    if rc < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"adjtimex: {os.strerror(err)}")
    return KernelClock(state=TIME_STATES.get(rc, str(rc)), status=timex.status, maxerror_us=timex.maxerror,
                       esterror_us=timex.esterror, offset=timex.offset, tai_offset_s=timex.tai)
